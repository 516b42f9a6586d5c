//! CDK cloud assembly reading: manifest.json, asset manifests, templates.
