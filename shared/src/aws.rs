//! AWS SDK configuration shared by every adapter: region, endpoint override, retries, assumed roles.
