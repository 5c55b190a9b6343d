"""Nodes shaped like kind's and kubeadm's: systemd as PID 1, the systemd cgroup driver."""
