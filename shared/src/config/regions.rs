//! The table of AWS regions a config may name, with their partitions, and the `region` JSON Schema.
//!
//! Taken from botocore's `partitions.json` (botocore 1.44.8, November 2026); `*-global` pseudo-regions
//! are left out because nothing deploys there. When AWS opens a region, add it here and refresh the
//! committed schema (see `schema/README` in the report: `APHEX_BLESS=1 cargo test -p aphex-shared schema`).

use schemars::{Schema, SchemaGenerator, json_schema};

/// One AWS region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The region code, e.g. `us-east-1`.
    pub name: &'static str,
    /// The ARN partition, e.g. `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: &'static str,
    /// AWS's own description, e.g. `US East (N. Virginia)`.
    pub description: &'static str,
}

/// Every region AWS publishes, commercial first.
pub const REGIONS: &[Region] = &[
    Region { name: "af-south-1", partition: "aws", description: "Africa (Cape Town)" },
    Region { name: "ap-east-1", partition: "aws", description: "Asia Pacific (Hong Kong)" },
    Region { name: "ap-east-2", partition: "aws", description: "Asia Pacific (Taipei)" },
    Region { name: "ap-northeast-1", partition: "aws", description: "Asia Pacific (Tokyo)" },
    Region { name: "ap-northeast-2", partition: "aws", description: "Asia Pacific (Seoul)" },
    Region { name: "ap-northeast-3", partition: "aws", description: "Asia Pacific (Osaka)" },
    Region { name: "ap-south-1", partition: "aws", description: "Asia Pacific (Mumbai)" },
    Region { name: "ap-south-2", partition: "aws", description: "Asia Pacific (Hyderabad)" },
    Region { name: "ap-southeast-1", partition: "aws", description: "Asia Pacific (Singapore)" },
    Region { name: "ap-southeast-2", partition: "aws", description: "Asia Pacific (Sydney)" },
    Region { name: "ap-southeast-3", partition: "aws", description: "Asia Pacific (Jakarta)" },
    Region { name: "ap-southeast-4", partition: "aws", description: "Asia Pacific (Melbourne)" },
    Region { name: "ap-southeast-5", partition: "aws", description: "Asia Pacific (Malaysia)" },
    Region { name: "ap-southeast-6", partition: "aws", description: "Asia Pacific (New Zealand)" },
    Region { name: "ap-southeast-7", partition: "aws", description: "Asia Pacific (Thailand)" },
    Region { name: "ca-central-1", partition: "aws", description: "Canada (Central)" },
    Region { name: "ca-west-1", partition: "aws", description: "Canada West (Calgary)" },
    Region { name: "eu-central-1", partition: "aws", description: "Europe (Frankfurt)" },
    Region { name: "eu-central-2", partition: "aws", description: "Europe (Zurich)" },
    Region { name: "eu-north-1", partition: "aws", description: "Europe (Stockholm)" },
    Region { name: "eu-south-1", partition: "aws", description: "Europe (Milan)" },
    Region { name: "eu-south-2", partition: "aws", description: "Europe (Spain)" },
    Region { name: "eu-west-1", partition: "aws", description: "Europe (Ireland)" },
    Region { name: "eu-west-2", partition: "aws", description: "Europe (London)" },
    Region { name: "eu-west-3", partition: "aws", description: "Europe (Paris)" },
    Region { name: "il-central-1", partition: "aws", description: "Israel (Tel Aviv)" },
    Region { name: "me-central-1", partition: "aws", description: "Middle East (UAE)" },
    Region { name: "me-south-1", partition: "aws", description: "Middle East (Bahrain)" },
    Region { name: "me-west-1", partition: "aws", description: "Middle East (Saudi Arabia)" },
    Region { name: "mx-central-1", partition: "aws", description: "Mexico (Central)" },
    Region { name: "sa-east-1", partition: "aws", description: "South America (Sao Paulo)" },
    Region { name: "sa-west-1", partition: "aws", description: "South America (Chile)" },
    Region { name: "us-east-1", partition: "aws", description: "US East (N. Virginia)" },
    Region { name: "us-east-2", partition: "aws", description: "US East (Ohio)" },
    Region { name: "us-west-1", partition: "aws", description: "US West (N. California)" },
    Region { name: "us-west-2", partition: "aws", description: "US West (Oregon)" },
    Region { name: "cn-north-1", partition: "aws-cn", description: "China (Beijing)" },
    Region { name: "cn-northwest-1", partition: "aws-cn", description: "China (Ningxia)" },
    Region {
        name: "eusc-de-east-1",
        partition: "aws-eusc",
        description: "AWS European Sovereign Cloud (Germany)",
    },
    Region { name: "us-iso-east-1", partition: "aws-iso", description: "US ISO East" },
    Region { name: "us-iso-west-1", partition: "aws-iso", description: "US ISO WEST" },
    Region { name: "us-isob-east-1", partition: "aws-iso-b", description: "US ISOB East (Ohio)" },
    Region { name: "us-isob-west-1", partition: "aws-iso-b", description: "US ISOB West" },
    Region { name: "eu-isoe-west-1", partition: "aws-iso-e", description: "EU ISOE West" },
    Region { name: "us-isof-east-1", partition: "aws-iso-f", description: "US ISOF EAST" },
    Region { name: "us-isof-south-1", partition: "aws-iso-f", description: "US ISOF SOUTH" },
    Region { name: "us-gov-east-1", partition: "aws-us-gov", description: "AWS GovCloud (US-East)" },
    Region { name: "us-gov-west-1", partition: "aws-us-gov", description: "AWS GovCloud (US-West)" },
];

/// The region called `name`, if AWS has one.
pub fn find(name: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|r| r.name == name)
}

/// The JSON Schema of an `environments[].region`: an enum, so editors complete region names.
pub(crate) fn region_schema(_: &mut SchemaGenerator) -> Schema {
    let names: Vec<&str> = REGIONS.iter().map(|r| r.name).collect();
    json_schema!({
        "type": "string",
        "enum": names,
        "examples": ["us-east-1"],
    })
}
