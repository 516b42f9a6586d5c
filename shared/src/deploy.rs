//! The deploy engine: selects, orders and deploys a cloud assembly's stacks through CloudFormation.
