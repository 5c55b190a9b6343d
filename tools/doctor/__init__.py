"""``pycrid doctor``: what a node needs for the configured adapter, checked one by one."""
