"""What /proc says about a process, for the benches."""


def rss_mib(pid):
    """The resident set size of process pid, in MiB."""
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024   # /proc says kB
    raise LookupError(f'no VmRSS in /proc/{pid}/status')
