//! Handler logic of the `validate-config` and `generate-template` Lambdas (the functions only wire).
