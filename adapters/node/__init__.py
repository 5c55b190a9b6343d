"""What both adapters need from the node: CNI and the saved pod
network, network namespaces, cgroup and procfs readers, CPU rates, the CRI
log writer, image references, atomic files, host facts and process trees."""
