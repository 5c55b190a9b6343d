"""The oci adapter's runtime: OCI bundle generation, runc and conmon, pod
sandboxes and containers, their state store and recovery after a restart.
Not built yet: the oci adapter answers its calls UNIMPLEMENTED."""
