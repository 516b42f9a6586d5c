//! The HTTP event shapes that reach the webhook (API Gateway REST v1 proxy, HTTP API v2, Lambda
//! function URL) to and from the domain `WebhookRequest` / `Response`. The only place with Lambda types.

use aphex::webhook::{RequestError, Response, WebhookRequest};
use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use serde_json::Value;

/// Which gateway sent the event; the answer goes back in the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    RestV1,
    HttpV2,
    FunctionUrl,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the invocation is not an API Gateway or function URL HTTP event: {0}")]
    NotHttp(String),
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Detects the event's shape: v2 and function URL events say `version: "2.0"` (function URLs with a
/// `*.lambda-url.*` domain); v1 events have `httpMethod` at the top. Some emulators (cargo lambda)
/// serialise v2 events with v1's `httpMethod` too, so the version decides first.
pub fn shape_of(event: &Value) -> Shape {
    let v2 = event.get("version").and_then(Value::as_str) == Some("2.0");
    if !v2 && event.get("httpMethod").is_some_and(Value::is_string) {
        Shape::RestV1
    } else if event
        .pointer("/requestContext/domainName")
        .and_then(Value::as_str)
        .is_some_and(|d| d.contains(".lambda-url."))
    {
        Shape::FunctionUrl
    } else {
        Shape::HttpV2
    }
}

/// Decodes an invocation payload into the domain request.
pub fn decode(event: Value) -> (Shape, Result<WebhookRequest, GatewayError>) {
    let shape = shape_of(&event);
    // Field names only: values may carry the payload.
    let keys: Vec<String> = event.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let not_http =
        |e: serde_json::Error| GatewayError::NotHttp(format!("{e} (top-level fields: {})", keys.join(", ")));
    let request = match shape {
        Shape::RestV1 => {
            serde_json::from_value::<ApiGatewayProxyRequest>(event).map_err(not_http).and_then(|r| {
                // REST APIs fill `headers` (last value) and `multiValueHeaders`; either may be absent.
                let headers = if r.headers.is_empty() { r.multi_value_headers } else { r.headers };
                Ok(WebhookRequest::from_event_body(headers, r.body.as_deref(), r.is_base64_encoded)?)
            })
        }
        Shape::HttpV2 => {
            serde_json::from_value::<ApiGatewayV2httpRequest>(event).map_err(not_http).and_then(|r| {
                Ok(WebhookRequest::from_event_body(r.headers, r.body.as_deref(), r.is_base64_encoded)?)
            })
        }
        Shape::FunctionUrl => {
            serde_json::from_value::<LambdaFunctionUrlRequest>(event).map_err(not_http).and_then(|r| {
                Ok(WebhookRequest::from_event_body(r.headers, r.body.as_deref(), r.is_base64_encoded)?)
            })
        }
    };
    (shape, request)
}

/// Encodes the domain response in the gateway's response shape.
pub fn encode(shape: Shape, response: &Response) -> Value {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let status = i64::from(response.status);
    let body = response.body_text();
    let encoded = match shape {
        Shape::RestV1 => {
            let mut r = ApiGatewayProxyResponse::default();
            r.status_code = status;
            r.headers = headers;
            r.body = Some(Body::Text(body));
            serde_json::to_value(r)
        }
        Shape::HttpV2 => {
            let mut r = ApiGatewayV2httpResponse::default();
            r.status_code = status;
            r.headers = headers;
            r.body = Some(Body::Text(body));
            serde_json::to_value(r)
        }
        Shape::FunctionUrl => {
            let mut r = LambdaFunctionUrlResponse::default();
            r.status_code = status;
            r.headers = headers;
            r.body = Some(body);
            serde_json::to_value(r)
        }
    };
    // These types always serialise; fall back to the common shape all three gateways read.
    encoded.unwrap_or_else(|_| serde_json::json!({"statusCode": 500, "body": ""}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aphex::webhook::{HEADER_EVENT, Secret, Secrets};
    use base64::Engine as _;

    fn lambda_fixture(name: &str) -> Value {
        let path = format!("{}/../../../shared/fixtures/lambda/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
            .unwrap()
    }

    fn github_fixture(name: &str) -> String {
        let path = format!("{}/../../../shared/fixtures/github/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A real gateway event carrying a signed GitHub delivery: headers added, body replaced.
    fn carry(mut event: Value, v1: bool, body: &str, base64: bool) -> Value {
        let sig = Secret::new("s").unwrap().sign(body.as_bytes());
        let add = [
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-Hub-Signature-256", sig.as_str()),
        ];
        for (k, v) in add {
            let k = if v1 { k.to_owned() } else { k.to_ascii_lowercase() };
            event["headers"][&k] = v.into();
            if v1 {
                event["multiValueHeaders"][&k] = serde_json::json!([v]);
            }
        }
        event["body"] =
            if base64 { base64::engine::general_purpose::STANDARD.encode(body).into() } else { body.into() };
        event["isBase64Encoded"] = base64.into();
        event
    }

    fn check_round_trip(event: Value, expect: Shape, body: &str) {
        let (shape, request) = decode(event);
        assert_eq!(shape, expect);
        let request = request.unwrap();
        assert_eq!(request.body, body.as_bytes());
        assert_eq!(request.required_header(HEADER_EVENT).unwrap(), "push");
        let sig = request.header(aphex::webhook::HEADER_SIGNATURE).unwrap();
        Secrets::single("s").unwrap().verify(&request.body, sig).unwrap();
    }

    #[test]
    fn rest_v1_events() {
        let body = github_fixture("octokit_push_branch_created_with_commit.json");
        for f in [
            "example-apigw-request.json",
            "example-apigw-sam-rest-request.json",
            "example-apigw-request-multi-value-parameters.json",
        ] {
            for b64 in [false, true] {
                check_round_trip(carry(lambda_fixture(f), true, &body, b64), Shape::RestV1, &body);
            }
        }
    }

    #[test]
    fn rest_v1_untouched_fixture_decodes_its_own_body() {
        let (shape, request) = decode(lambda_fixture("example-apigw-request.json"));
        assert_eq!(shape, Shape::RestV1);
        let request = request.unwrap();
        assert_eq!(&request.body[..], b"{\r\n\t\"a\": 1\r\n}");
        assert_eq!(request.header("content-type").unwrap(), Some("application/json"));
    }

    #[test]
    fn http_v2_events() {
        let body = github_fixture("octokit_push_tag_created.json");
        for f in [
            "example-apigw-v2-request-no-authorizer.json",
            "example-apigw-v2-request-iam.json",
            "example-apigw-v2-request-jwt-authorizer.json",
            "example-apigw-v2-request-multi-value-parameters.json",
            "example-apigw-sam-http-request.json",
        ] {
            for b64 in [false, true] {
                check_round_trip(carry(lambda_fixture(f), false, &body, b64), Shape::HttpV2, &body);
            }
        }
    }

    /// Function URL events are v2-shaped; this one follows the AWS documentation's example payload.
    #[test]
    fn function_url_events() {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/",
            "rawQueryString": "",
            "headers": {"content-type": "application/x-www-form-urlencoded", "host": "abcdefg.lambda-url.us-east-1.on.aws"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abcdefg",
                "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abcdefg",
                "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "192.30.252.1", "userAgent": "GitHub-Hookshot/abc"},
                "requestId": "id",
                "routeKey": "$default",
                "stage": "$default",
                "time": "12/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390_i64
            },
            "isBase64Encoded": false
        });
        let body = "payload=%7B%7D";
        for b64 in [false, true] {
            check_round_trip(carry(event.clone(), false, body, b64), Shape::FunctionUrl, body);
        }
    }

    #[test]
    fn non_http_invocations_and_bad_bodies_are_errors() {
        let (_, r) = decode(serde_json::json!({"httpMethod": 42}));
        assert!(matches!(r, Err(GatewayError::NotHttp(_))));
        let (_, r) = decode(lambda_fixture("example-eventbridge-event-obj.json"));
        assert!(matches!(r, Err(GatewayError::NotHttp(_))), "{r:?}");
        let mut bad = lambda_fixture("example-apigw-v2-request-no-authorizer.json");
        bad["body"] = "%%%".into();
        bad["isBase64Encoded"] = true.into();
        assert!(matches!(decode(bad).1, Err(GatewayError::Request(RequestError::Base64(_)))));
    }

    #[test]
    fn responses_in_each_shape() {
        let response = Response { status: 202, body: serde_json::json!({"status": "started"}) };
        for shape in [Shape::RestV1, Shape::HttpV2, Shape::FunctionUrl] {
            let v = encode(shape, &response);
            assert_eq!(v["statusCode"], 202, "{shape:?}");
            assert_eq!(v["body"], r#"{"status":"started"}"#, "{shape:?}");
            assert_eq!(v["headers"]["content-type"], "application/json", "{shape:?}");
            assert_eq!(v["isBase64Encoded"], false, "{shape:?}");
        }
    }
}
