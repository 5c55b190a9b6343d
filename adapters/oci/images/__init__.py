"""The oci adapter's ImageService: a registry client (distribution API with
mirrors, auth and retries), a content-addressed store with atomic image
records, layer unpacking, and overlay root filesystems for containers."""
