//! Asset zips as the CDK CLI makes them: a Lambda-layer-shaped folder (nested folders, a dot file,
//! an executable, a symbolic link) published by the real `cdk deploy` into moto, and zipped by aphex:
//! the same bytes, so the same asset hash holds the same object whoever published it.

use aphex::deploy::assets::zip_dir;
use aphex_tests::deploy_support::CdkApp;
use aphex_tests::moto::Moto;

const APP: &str = r#"
const cdk = require("aws-cdk-lib");
const app = new cdk.App();
const stack = new cdk.Stack(app, "Zips");
const asset = new cdk.aws_s3_assets.Asset(stack, "Layer", { path: "layer" });
new cdk.CfnOutput(stack, "Key", { value: asset.s3ObjectKey });
app.synth();
"#;

/// A layer folder: files at several depths, folders that sort differently from their files.
fn layer(dir: &std::path::Path) {
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "python/lib/python3.12/site-packages/util.py",
        "def handler(event, context):\n    return {\"ok\": True}\n",
    );
    write("python/lib/python3.12/site-packages/util-1.0.dist-info/METADATA", "Name: util\nVersion: 1.0\n");
    write("nodejs/node_modules/left-pad/index.js", "module.exports = (s, n) => s.padStart(n);\n");
    write("nodejs/node_modules/left-pad/package.json", "{\"name\": \"left-pad\", \"version\": \"1.3.0\"}\n");
    write("README.md", &"layer readme\n".repeat(20));
    write(".env.example", "KEY=value\n");
    write("Zeta.txt", "capital letters sort first\n");
    write("bin/run.sh", "#!/bin/sh\necho hi\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("bin/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("README.md", dir.join("LINK.md")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_zips_to_the_bytes_cdk_deploy_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    layer(&tmp.path().join("layer"));
    let app = CdkApp::new(tmp.path(), APP);
    let moto = Moto::start();
    let env = moto.env();
    app.cdk(&env, &["bootstrap", "aws://123456789012/us-east-1"]);
    let out = app.cdk(&env, &["deploy", "--method=direct", "--require-approval", "never"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let key = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Zips.Key = "))
        .unwrap_or_else(|| panic!("no Zips.Key output in:\n{text}"))
        .trim()
        .to_owned();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk_config("us-east-1").await).force_path_style(true).build(),
    );
    let published = s3
        .get_object()
        .bucket("cdk-hnb659fds-assets-123456789012-us-east-1")
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec();
    let ours = zip_dir("Layer", &tmp.path().join("layer")).unwrap();
    if ours != published {
        let list = |bytes: &[u8]| {
            let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
            (0..a.len())
                .map(|i| {
                    let f = a.by_index(i).unwrap();
                    format!(
                        "{} mode={:o} crc={:08x} size={} csize={}",
                        f.name(),
                        f.unix_mode().unwrap_or(0),
                        f.crc32(),
                        f.size(),
                        f.compressed_size()
                    )
                })
                .collect::<Vec<_>>()
        };
        panic!(
            "aphex's zip ({} bytes) differs from the CLI's ({} bytes):\naphex: {:#?}\ncli:   {:#?}",
            ours.len(),
            published.len(),
            list(&ours),
            list(&published)
        );
    }
}
