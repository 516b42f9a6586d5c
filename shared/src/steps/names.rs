//! Names derived from stack outputs: `APHEX_OUTPUT_<STACK>_<KEY>` in upper snake case.

use super::Outputs;

/// Upper snake case: `DemoApiStack` → `DEMO_API_STACK`, `apiURL2` → `API_URL2`, `Prod/Web-App` →
/// `PROD_WEB_APP`. Word breaks at lower→upper, at the last capital of an acronym or a capital after a digit that starts a word, and at any
/// non-alphanumeric character.
pub fn upper_snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
            continue;
        }
        if c.is_ascii_uppercase() && i > 0 && !out.ends_with('_') && !out.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || ((prev.is_ascii_uppercase() || prev.is_ascii_digit()) && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out.trim_end_matches('_').to_owned()
}

/// The environment variables of stack outputs, in output order.
pub fn output_vars(outputs: &Outputs) -> Vec<(String, String)> {
    outputs
        .iter()
        .flat_map(|(stack, values)| {
            values.iter().map(move |(key, value)| {
                (format!("APHEX_OUTPUT_{}_{}", upper_snake(stack), upper_snake(key)), value.clone())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expect: &str) {
        assert_eq!(upper_snake(input), expect, "{input}");
    }

    #[test]
    fn upper_snake_cases() {
        check("DemoApiStack", "DEMO_API_STACK");
        check("ApiUrl", "API_URL");
        check("apiURL2", "API_URL2");
        check("HTTPServer", "HTTP_SERVER");
        check("Prod/Web-App", "PROD_WEB_APP");
        check("bucket_name", "BUCKET_NAME");
        check("Stage2Stack", "STAGE2_STACK");
        check("dev-data", "DEV_DATA");
        check("already_UPPER", "ALREADY_UPPER");
    }

    #[test]
    fn output_vars_name_stack_and_key() {
        let outputs: Outputs = [(
            "DemoApi".to_owned(),
            [("FunctionName".to_owned(), "fn-1".to_owned()), ("QueueUrl".to_owned(), "http://q".to_owned())]
                .into_iter()
                .collect(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            output_vars(&outputs),
            [
                ("APHEX_OUTPUT_DEMO_API_FUNCTION_NAME".to_owned(), "fn-1".to_owned()),
                ("APHEX_OUTPUT_DEMO_API_QUEUE_URL".to_owned(), "http://q".to_owned())
            ]
        );
    }

    proptest! {
        #[test]
        fn upper_snake_is_a_valid_env_var_fragment(name in "[A-Za-z0-9/_.-]{0,24}") {
            let out = upper_snake(&name);
            prop_assert!(out.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
            prop_assert!(!out.contains("__") && !out.starts_with('_') && !out.ends_with('_'));
            prop_assert_eq!(upper_snake(&out), out.clone());
        }
    }
}
