//! A small line diff (unified format) for `aphex template diff`.

/// One line of an edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// Largest middle section (after trimming the common head and tail) diffed line by line; beyond it the
/// whole middle is shown as replaced, to keep memory bounded.
const MAX_CELLS: usize = 4_000_000;

fn edit_script<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..].iter().rev().zip(new[head..].iter().rev()).take_while(|(a, b)| a == b).count();
    let (a, b) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    let mut ops: Vec<Op<'a>> = old[..head].iter().map(|l| Op::Same(l)).collect();
    if (a.len() + 1).saturating_mul(b.len() + 1) > MAX_CELLS {
        ops.extend(a.iter().map(|l| Op::Del(l)));
        ops.extend(b.iter().map(|l| Op::Add(l)));
    } else {
        // lcs[i][j] = length of the LCS of a[i..] and b[j..], in one flat table.
        let w = b.len() + 1;
        let mut lcs = vec![0u32; (a.len() + 1) * w];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i * w + j] = if a[i] == b[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if a[i] == b[j] {
                ops.push(Op::Same(a[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                ops.push(Op::Del(a[i]));
                i += 1;
            } else {
                ops.push(Op::Add(b[j]));
                j += 1;
            }
        }
        ops.extend(a[i..].iter().map(|l| Op::Del(l)));
        ops.extend(b[j..].iter().map(|l| Op::Add(l)));
    }
    ops.extend(old[old.len() - tail..].iter().map(|l| Op::Same(l)));
    ops
}

/// Unified diff of two texts with `context` lines around each change; empty when they are equal.
pub fn unified(old_name: &str, new_name: &str, old: &str, new: &str, context: usize) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let ops = edit_script(&old_lines, &new_lines);
    if ops.iter().all(|o| matches!(o, Op::Same(_))) {
        return String::new();
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Positions (in ops) of changes, grouped into hunks whose context windows touch.
    let changed: Vec<usize> =
        ops.iter().enumerate().filter(|(_, o)| !matches!(o, Op::Same(_))).map(|(i, _)| i).collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &c in &changed {
        let (start, end) = (c.saturating_sub(context), (c + context + 1).min(ops.len()));
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    for (start, end) in hunks {
        let count = |pred: fn(&Op) -> bool, upto: usize| ops[..upto].iter().filter(|o| pred(o)).count();
        let in_old = |o: &Op| !matches!(o, Op::Add(_));
        let in_new = |o: &Op| !matches!(o, Op::Del(_));
        let (old_start, new_start) = (count(in_old, start), count(in_new, start));
        let old_len = ops[start..end].iter().filter(|o| in_old(o)).count();
        let new_len = ops[start..end].iter().filter(|o| in_new(o)).count();
        out.push_str(&format!("@@ -{},{} +{},{} @@\n", old_start + 1, old_len, new_start + 1, new_len));
        for op in &ops[start..end] {
            match op {
                Op::Same(l) => out.push_str(&format!(" {l}\n")),
                Op::Del(l) => out.push_str(&format!("-{l}\n")),
                Op::Add(l) => out.push_str(&format!("+{l}\n")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a", "b", "x\ny\n", "x\ny\n", 3), "");
    }

    #[test]
    fn one_changed_line_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        let want = "--- live\n+++ new\n@@ -3,6 +3,7 @@\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n+9\n";
        assert_eq!(unified("live", "new", old, new, 2), want);
    }

    #[test]
    fn from_empty() {
        assert_eq!(unified("a", "b", "", "x\n", 3), "--- a\n+++ b\n@@ -1,0 +1,1 @@\n+x\n");
    }
}
