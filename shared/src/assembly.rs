//! The CDK cloud assembly (`cdk.out`): serde types following the official cloud-assembly and asset
//! manifest schemas (revision 55), loading nested assemblies of CDK Stages, and a flat list of stacks
//! with their resolved templates, assets and dependencies.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

/// Highest manifest major version this build understands (`@aws-cdk/cloud-assembly-schema` revision).
pub const MAX_SCHEMA_MAJOR: u64 = 55;
/// Lowest manifest major version accepted: older ones predate the bootstrap-role properties we rely on.
pub const MIN_SCHEMA_MAJOR: u64 = 21;

/// Why a cloud assembly cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {source}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} has cloud assembly schema version {version}, but aphex understands majors {MIN_SCHEMA_MAJOR}..={MAX_SCHEMA_MAJOR}; {hint}"
    )]
    UnsupportedVersion { path: PathBuf, version: String, hint: &'static str },
    #[error("artifact {artifact} in {path} is missing its properties.{field}")]
    MissingProperty { path: PathBuf, artifact: String, field: &'static str },
}

/// `manifest.json`, only the parts aphex reads; unknown fields are ignored on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: String,
    #[serde(default)]
    pub artifacts: IndexMap<String, ArtifactManifest>,
}

/// One artifact of `manifest.json`. `properties` stays raw JSON and is typed per artifact type.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactManifest {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub properties: Option<serde_json::Value>,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `properties` of an `aws:cloudformation:stack` artifact.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackProperties {
    pub template_file: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// None when the app sets no stack tags (the manifest has no `tags`).
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// None when the app sets no notification ARNs.
    #[serde(default)]
    pub notification_arns: Option<Vec<String>>,
    #[serde(default)]
    pub stack_name: Option<String>,
    #[serde(default)]
    pub termination_protection: Option<bool>,
    #[serde(default)]
    pub assume_role_arn: Option<String>,
    #[serde(default)]
    pub assume_role_external_id: Option<String>,
    #[serde(default)]
    pub cloud_formation_execution_role_arn: Option<String>,
    #[serde(default)]
    pub stack_template_asset_object_url: Option<String>,
    #[serde(default)]
    pub requires_bootstrap_stack_version: Option<u32>,
    #[serde(default)]
    pub bootstrap_stack_version_ssm_parameter: Option<String>,
}

/// `properties` of a `cdk:asset-manifest` artifact.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssetManifestProperties {
    file: String,
    #[serde(default)]
    requires_bootstrap_stack_version: Option<u32>,
    #[serde(default)]
    bootstrap_stack_version_ssm_parameter: Option<String>,
}

/// `properties` of a `cdk:cloud-assembly` artifact (a CDK Stage).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NestedAssemblyProperties {
    directory_name: String,
    #[serde(default)]
    display_name: Option<String>,
}

/// `*.assets.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetManifestFile {
    pub version: String,
    #[serde(default)]
    pub files: IndexMap<String, FileAssetEntry>,
    #[serde(default)]
    pub docker_images: IndexMap<String, DockerImageEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileAssetEntry {
    #[serde(default)]
    pub display_name: Option<String>,
    pub source: FileSource,
    #[serde(default)]
    pub destinations: IndexMap<String, FileDestination>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileSource {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub packaging: Option<Packaging>,
    /// A command that produces the asset; aphex does not run it (reported as unsupported).
    #[serde(default)]
    pub executable: Option<Vec<String>>,
}

/// How a file asset is packaged before upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Packaging {
    #[serde(rename = "file")]
    File,
    #[serde(rename = "zip")]
    Zip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDestination {
    pub bucket_name: String,
    pub object_key: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub assume_role_arn: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerImageEntry {
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A file asset of one stack, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct FileAsset {
    /// The asset hash (its id in the asset manifest).
    pub id: String,
    pub display_name: String,
    /// Absolute path of the file or directory.
    pub path: PathBuf,
    pub packaging: Packaging,
    pub destinations: Vec<FileDestination>,
}

impl PartialEq for FileDestination {
    fn eq(&self, other: &Self) -> bool {
        self.bucket_name == other.bucket_name
            && self.object_key == other.object_key
            && self.region == other.region
            && self.assume_role_arn == other.assume_role_arn
    }
}

/// A docker image asset: aphex cannot publish these yet, so a stack that has one fails clearly.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerAsset {
    pub id: String,
    pub display_name: String,
}

/// One deployable stack of the assembly (nested Stage assemblies flattened).
#[derive(Debug, Clone)]
pub struct Stack {
    /// The artifact id, unique across the whole assembly once prefixed with its Stage path.
    pub id: String,
    /// CloudFormation stack name.
    pub stack_name: String,
    /// Hierarchical name, e.g. `Prod/Api` for a stack in Stage `Prod`.
    pub display_name: String,
    /// `aws://ACCOUNT/REGION`, possibly with `unknown-account` / `unknown-region`.
    pub environment: String,
    /// Absolute path of the template file.
    pub template_path: PathBuf,
    pub properties: StackProperties,
    /// Ids (in this list's id space) of the stacks this one depends on.
    pub dependencies: Vec<String>,
    pub file_assets: Vec<FileAsset>,
    pub docker_assets: Vec<DockerAsset>,
    /// Bootstrap requirement of the asset manifests (the stack's own is in `properties`).
    pub assets_bootstrap: Option<(u32, String)>,
}

/// A loaded cloud assembly.
#[derive(Debug, Clone)]
pub struct CloudAssembly {
    pub dir: PathBuf,
    pub version: String,
    pub stacks: Vec<Stack>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, AssemblyError> {
    let text = std::fs::read(path).map_err(|source| AssemblyError::Io { path: path.to_owned(), source })?;
    serde_json::from_slice(&text).map_err(|source| AssemblyError::Parse {
        path: path.to_owned(),
        what,
        source,
    })
}

fn check_version(path: &Path, version: &str) -> Result<(), AssemblyError> {
    let major = version.split('.').next().and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(m) if (MIN_SCHEMA_MAJOR..=MAX_SCHEMA_MAJOR).contains(&m) => Ok(()),
        Some(m) if m > MAX_SCHEMA_MAJOR => Err(AssemblyError::UnsupportedVersion {
            path: path.to_owned(),
            version: version.to_owned(),
            hint: "it was written by a newer aws-cdk-lib: upgrade aphex, or pin aws-cdk-lib to a release that writes this schema",
        }),
        _ => Err(AssemblyError::UnsupportedVersion {
            path: path.to_owned(),
            version: version.to_owned(),
            hint: "upgrade aws-cdk-lib in the app to a 2.x release",
        }),
    }
}

fn properties<T: serde::de::DeserializeOwned>(
    path: &Path,
    id: &str,
    artifact: &ArtifactManifest,
    what: &'static str,
) -> Result<T, AssemblyError> {
    let value = artifact.properties.clone().ok_or_else(|| AssemblyError::MissingProperty {
        path: path.to_owned(),
        artifact: id.to_owned(),
        field: what,
    })?;
    serde_json::from_value(value).map_err(|source| AssemblyError::Parse {
        path: path.to_owned(),
        what: "artifact properties",
        source,
    })
}

impl CloudAssembly {
    /// Loads `dir/manifest.json` and everything it refers to, including nested Stage assemblies.
    pub fn load(dir: &Path) -> Result<CloudAssembly, AssemblyError> {
        let dir = if dir.is_absolute() {
            dir.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|source| AssemblyError::Io { path: dir.to_owned(), source })?
                .join(dir)
        };
        let mut stacks = Vec::new();
        let version = load_into(&dir, "", &mut stacks)?;
        Ok(CloudAssembly { dir, version, stacks })
    }

    /// The stack with this id, stack name or display name.
    pub fn stack(&self, name: &str) -> Option<&Stack> {
        self.stacks.iter().find(|s| s.id == name || s.stack_name == name || s.display_name == name)
    }
}

/// The hierarchical name of an artifact of the assembly of Stage `stage` (its full construct path,
/// empty for the app's own assembly), as the CDK CLI shows it (`cdk ls`).
///
/// aws-cdk-lib writes every `displayName` as the full construct path (`Outer/Inner/Api` for stack
/// `Api` in Stage `Inner` in Stage `Outer`; `Outer/Inner` for the nested assembly of `Inner`), so a
/// display name that already starts with the Stage's path is taken as it is; one that does not (a
/// relative name, or none: then the artifact id) is put under the Stage's path.
pub fn hierarchical_name(stage: &str, display_name: Option<&str>, id: &str) -> String {
    let name = display_name.unwrap_or(id);
    if stage.is_empty() || name.strip_prefix(stage).is_some_and(|rest| rest.starts_with('/')) {
        name.to_owned()
    } else {
        format!("{stage}/{name}")
    }
}

/// Loads one (possibly nested) assembly; `stage` is the full path of its Stage (`Outer/Inner`, empty
/// for the app's own assembly), the prefix of its stacks' ids.
fn load_into(dir: &Path, stage: &str, out: &mut Vec<Stack>) -> Result<String, AssemblyError> {
    let prefix = if stage.is_empty() { String::new() } else { format!("{stage}/") };
    let manifest_path = dir.join("manifest.json");
    let manifest: Manifest = read_json(&manifest_path, "cloud assembly manifest")?;
    check_version(&manifest_path, &manifest.version)?;

    let stack_ids: HashSet<&str> = manifest
        .artifacts
        .iter()
        .filter(|(_, a)| a.kind == "aws:cloudformation:stack")
        .map(|(id, _)| id.as_str())
        .collect();

    for (id, artifact) in &manifest.artifacts {
        match artifact.kind.as_str() {
            "aws:cloudformation:stack" => {
                let props: StackProperties = properties(&manifest_path, id, artifact, "templateFile")?;
                let mut file_assets = Vec::new();
                let mut docker_assets = Vec::new();
                let mut assets_bootstrap = None;
                let mut dependencies = Vec::new();
                for dep in &artifact.dependencies {
                    if stack_ids.contains(dep.as_str()) {
                        dependencies.push(format!("{prefix}{dep}"));
                        continue;
                    }
                    let Some(dep_artifact) = manifest.artifacts.get(dep) else { continue };
                    if dep_artifact.kind != "cdk:asset-manifest" {
                        continue;
                    }
                    let amp: AssetManifestProperties = properties(&manifest_path, dep, dep_artifact, "file")?;
                    if let (Some(v), Some(p)) =
                        (amp.requires_bootstrap_stack_version, amp.bootstrap_stack_version_ssm_parameter)
                    {
                        assets_bootstrap = Some((v, p));
                    }
                    let assets_path = dir.join(&amp.file);
                    let assets: AssetManifestFile = read_json(&assets_path, "asset manifest")?;
                    check_version(&assets_path, &assets.version)?;
                    for (hash, entry) in assets.files {
                        let display_name = entry.display_name.clone().unwrap_or_else(|| hash.clone());
                        let path = entry.source.path.as_ref().map(|p| dir.join(p)).unwrap_or_default();
                        file_assets.push(FileAsset {
                            id: hash,
                            display_name,
                            path,
                            packaging: entry.source.packaging.unwrap_or(Packaging::File),
                            destinations: entry.destinations.into_values().collect(),
                        });
                    }
                    for (hash, entry) in assets.docker_images {
                        docker_assets.push(DockerAsset {
                            display_name: entry.display_name.unwrap_or_else(|| hash.clone()),
                            id: hash,
                        });
                    }
                }
                let stack_name = props.stack_name.clone().unwrap_or_else(|| id.clone());
                let display_name = hierarchical_name(stage, artifact.display_name.as_deref(), id);
                out.push(Stack {
                    id: format!("{prefix}{id}"),
                    stack_name,
                    display_name,
                    environment: artifact
                        .environment
                        .clone()
                        .unwrap_or_else(|| "aws://unknown-account/unknown-region".into()),
                    template_path: dir.join(&props.template_file),
                    properties: props,
                    dependencies,
                    file_assets,
                    docker_assets,
                    assets_bootstrap,
                });
            }
            "cdk:cloud-assembly" => {
                let nested: NestedAssemblyProperties =
                    properties(&manifest_path, id, artifact, "directoryName")?;
                let path = hierarchical_name(stage, nested.display_name.as_deref(), id);
                load_into(&dir.join(&nested.directory_name), &path, out)?;
            }
            // Asset manifests are read through their stacks; tree, metadata, feature-flag reports and
            // artifact types added by newer CDK releases are not needed to deploy.
            _ => {}
        }
    }
    Ok(manifest.version)
}

/// An `aws://ACCOUNT/REGION` string split into parts.
pub fn parse_environment(env: &str) -> Option<(&str, &str)> {
    let rest = env.strip_prefix("aws://")?;
    let (account, region) = rest.split_once('/')?;
    Some((account, region))
}

/// Replaces `${AWS::AccountId}`, `${AWS::Region}` and `${AWS::Partition}` as the CDK CLI does; the
/// partition comes from the region table ([`crate::aws::partition`]), and stays a placeholder for a
/// region the table lacks (CloudFormation or IAM then names it, rather than a wrong `aws`).
pub fn substitute(text: &str, account: &str, region: &str) -> String {
    let text = text.replace("${AWS::AccountId}", account).replace("${AWS::Region}", region);
    match crate::aws::partition(region) {
        Some(partition) => text.replace("${AWS::Partition}", partition),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/cdk"))
    }

    #[test]
    fn loads_multi_stack_with_dependencies_and_assets() {
        let asm = CloudAssembly::load(&fixtures().join("synth-multi-stack-cross-refs")).unwrap();
        let names: Vec<_> = asm.stacks.iter().map(|s| s.stack_name.as_str()).collect();
        assert_eq!(names, ["ProducerStack", "ConsumerStack", "MonitoringStack"]);
        let consumer = asm.stack("ConsumerStack").unwrap();
        assert_eq!(consumer.dependencies, ["ProducerStack"]);
        assert!(consumer.template_path.is_file());
        assert!(consumer.file_assets.iter().any(|a| a.packaging == Packaging::File && a.path.is_file()));
        assert_eq!(consumer.assets_bootstrap, Some((6, "/cdk-bootstrap/hnb659fds/version".into())));
        assert_eq!(consumer.properties.requires_bootstrap_stack_version, Some(6));
        assert_eq!(asm.stack("MonitoringStack").unwrap().dependencies, ["ConsumerStack"]);
    }

    #[test]
    fn every_fixture_loads() {
        for (dir, stacks, zips, dockers) in [
            ("synth-multi-stack-cross-refs", 3, 1, 0),
            ("synth-lambda-file-asset", 1, 1, 0),
            ("synth-nested-stacks", 1, 1, 0),
            ("synth-docker-image-asset", 1, 0, 1),
            ("aws-cdk-cli/toolkit-stack-with-asset", 1, 1, 0),
        ] {
            let asm = CloudAssembly::load(&fixtures().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
            assert_eq!(asm.stacks.len(), stacks, "{dir}");
            let all_zips =
                asm.stacks.iter().flat_map(|s| &s.file_assets).filter(|a| a.packaging == Packaging::Zip);
            assert_eq!(all_zips.clone().count(), zips, "{dir}");
            for a in all_zips {
                assert!(a.path.is_dir(), "{dir}: {}", a.path.display());
            }
            assert_eq!(asm.stacks.iter().map(|s| s.docker_assets.len()).sum::<usize>(), dockers, "{dir}");
        }
    }

    #[test]
    fn nested_stack_template_is_a_file_asset() {
        let asm = CloudAssembly::load(&fixtures().join("synth-nested-stacks")).unwrap();
        let parent = &asm.stacks[0];
        assert!(
            parent
                .file_assets
                .iter()
                .any(|a| a.path.ends_with("ParentStackWorkers59BCE5BF.nested.template.json"))
        );
    }

    fn write_manifest(dir: &Path, manifest: serde_json::Value) {
        std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    }

    #[test]
    fn refuses_newer_major_and_tolerates_unknown_artifacts() {
        let tmp = tempfile::tempdir().unwrap();
        write_manifest(tmp.path(), serde_json::json!({"version": "99.0.0", "artifacts": {}}));
        let err = CloudAssembly::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("99.0.0") && err.contains("newer aws-cdk-lib"), "{err}");

        write_manifest(
            tmp.path(),
            serde_json::json!({"version": "55.1.0", "someNewField": 1, "artifacts": {
                "X": {"type": "cdk:future-thing", "properties": {"whatever": true}}
            }}),
        );
        assert!(CloudAssembly::load(tmp.path()).unwrap().stacks.is_empty());
    }

    #[test]
    fn nested_stage_assemblies_are_flattened_with_their_stage_path() {
        let tmp = tempfile::tempdir().unwrap();
        let stage = tmp.path().join("assembly-Prod");
        std::fs::create_dir(&stage).unwrap();
        std::fs::write(stage.join("Api.template.json"), "{}").unwrap();
        write_manifest(
            &stage,
            serde_json::json!({"version": "55.0.0", "artifacts": {
                "ProdApi": {"type": "aws:cloudformation:stack", "environment": "aws://unknown-account/unknown-region",
                    "displayName": "Prod/Api", "properties": {"templateFile": "Api.template.json", "stackName": "Prod-Api"}}
            }}),
        );
        write_manifest(
            tmp.path(),
            serde_json::json!({"version": "55.0.0", "artifacts": {
                "assembly-Prod": {"type": "cdk:cloud-assembly", "properties": {"directoryName": "assembly-Prod", "displayName": "Prod"}}
            }}),
        );
        let asm = CloudAssembly::load(tmp.path()).unwrap();
        assert_eq!(asm.stacks.len(), 1);
        assert_eq!(asm.stacks[0].display_name, "Prod/Api");
        assert_eq!(asm.stacks[0].stack_name, "Prod-Api");
        assert_eq!(asm.stacks[0].id, "Prod/ProdApi");
    }

    #[test]
    fn hierarchical_names_are_full_construct_paths() {
        fn check(stage: &str, display: Option<&str>, id: &str, expect: &str) {
            assert_eq!(hierarchical_name(stage, display, id), expect, "{stage:?} {display:?} {id:?}");
        }
        check("", Some("Api"), "Api", "Api");
        check("", None, "Api", "Api");
        check("", Some("Group/Api"), "GroupApi1234", "Group/Api");
        // aws-cdk-lib writes full paths at every depth: kept as they are.
        check("Outer", Some("Outer/Inner"), "assembly-Outer-Inner", "Outer/Inner");
        check("Outer/Inner", Some("Outer/Inner/Api"), "OuterInnerApi5F3A", "Outer/Inner/Api");
        // A relative name (or none) goes under the Stage's path.
        check("Prod", Some("Api"), "ProdApi", "Prod/Api");
        check("Prod", None, "ProdApi", "Prod/ProdApi");
        // A Stage named like its parent: `Outer/Outer` is a full path, `Outer` a relative one.
        check("Outer", Some("Outer/Outer"), "x", "Outer/Outer");
        check("Outer", Some("Outer"), "x", "Outer/Outer");
        // A prefix of the Stage's name is not its path.
        check("Pro", Some("Prod/Api"), "x", "Pro/Prod/Api");
    }

    /// A Stage tree as aws-cdk-lib writes it: each Stage a nested `cdk:cloud-assembly` whose
    /// `displayName` is its full path, each stack's `displayName` its full path.
    #[derive(Debug, Clone)]
    struct StageTree {
        name: String,
        stacks: Vec<String>,
        stages: Vec<StageTree>,
    }

    fn write_tree(dir: &Path, path: &str, tree: &StageTree, expect: &mut Vec<String>) {
        std::fs::create_dir_all(dir).unwrap();
        let mut artifacts = serde_json::Map::new();
        let full = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}/{name}") };
        for stack in &tree.stacks {
            let display = full(stack);
            let id = display.replace('/', "");
            std::fs::write(dir.join(format!("{id}.template.json")), "{}").unwrap();
            artifacts.insert(
                id.clone(),
                serde_json::json!({"type": "aws:cloudformation:stack", "displayName": display,
                    "properties": {"templateFile": format!("{id}.template.json"), "stackName": display.replace('/', "-")}}),
            );
            expect.push(display);
        }
        for stage in &tree.stages {
            let stage_path = full(&stage.name);
            let dir_name = format!("assembly-{}", stage_path.replace('/', "-"));
            artifacts.insert(
                dir_name.clone(),
                serde_json::json!({"type": "cdk:cloud-assembly",
                    "properties": {"directoryName": dir_name, "displayName": stage_path}}),
            );
            write_tree(&dir.join(&dir_name), &stage_path, stage, expect);
        }
        write_manifest(dir, serde_json::json!({"version": "55.0.0", "artifacts": artifacts}));
    }

    fn stage_tree(depth: u32) -> impl proptest::strategy::Strategy<Value = StageTree> {
        use proptest::prelude::*;
        let name = "[A-Z][a-z]{0,3}";
        let leaf = (name, proptest::collection::btree_set(name, 0..3)).prop_map(|(name, stacks)| StageTree {
            name,
            stacks: stacks.into_iter().collect(),
            stages: vec![],
        });
        leaf.prop_recursive(depth, 12, 3, move |inner| {
            (name, proptest::collection::btree_set(name, 0..3), proptest::collection::vec(inner, 0..3))
                .prop_map(|(name, stacks, stages)| {
                    // Sibling Stages have distinct names, as constructs must.
                    let mut seen = std::collections::BTreeSet::new();
                    let stages =
                        stages.into_iter().filter(|s: &StageTree| seen.insert(s.name.clone())).collect();
                    StageTree { name, stacks: stacks.into_iter().collect(), stages }
                })
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// At every nesting depth, a stack's display name is its construct path (what `cdk ls` prints).
        #[test]
        fn nested_stages_at_any_depth_keep_their_construct_paths(tree in stage_tree(4)) {
            let tmp = tempfile::tempdir().unwrap();
            let mut expect = Vec::new();
            let app = StageTree { name: String::new(), stacks: tree.stacks.clone(), stages: vec![tree] };
            write_tree(tmp.path(), "", &app, &mut expect);
            let asm = CloudAssembly::load(tmp.path()).unwrap();
            let mut got: Vec<String> = asm.stacks.iter().map(|s| s.display_name.clone()).collect();
            got.sort();
            expect.sort();
            proptest::prop_assert_eq!(got, expect);
            let ids: HashSet<&str> = asm.stacks.iter().map(|s| s.id.as_str()).collect();
            proptest::prop_assert_eq!(ids.len(), asm.stacks.len());
        }
    }

    #[test]
    fn substitutes_placeholders() {
        assert_eq!(
            substitute(
                "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/x-${AWS::Region}",
                "1",
                "cn-north-1"
            ),
            "arn:aws-cn:iam::1:role/x-cn-north-1"
        );
        for (region, partition) in [
            ("us-gov-west-1", "aws-us-gov"),
            ("us-isof-east-1", "aws-iso-f"),
            ("eu-isoe-west-1", "aws-iso-e"),
        ] {
            assert_eq!(substitute("arn:${AWS::Partition}:iam", "1", region), format!("arn:{partition}:iam"));
        }
        assert_eq!(
            parse_environment("aws://unknown-account/eu-west-1"),
            Some(("unknown-account", "eu-west-1"))
        );
    }
}
