//! Cluster access: a `kube::Client` from KUBECONFIG, or from EKS by cluster name with an STS token.
