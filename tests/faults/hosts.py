"""Simulated hosts for tests and benchmarks: Linux network namespaces on one private bridge.

    with Network(["web", "w1", "w2", "w3"]) as net:
        net.bridge_address                  # the root namespace's address on the bridge (servers listen here)
        proc = net["w2"].popen([sys.executable, "-m", "searchjobs", "worker"], env=env)
        net["w2"].cut()                     # drop every packet in and out of w2: a partition, not a crash
        net["w2"].heal()

Each host is a namespace `sj<pid><k>-<name>` joined by a veth pair to the bridge
`sj<pid><k>b`, with an address of a /24 under 10.77.0.0/16 that no route of the
machine uses yet (the root namespace holds .1). `cut()` drops every packet
where it arrives (nftables netdev ingress hooks on both ends of the host's
veth; iptables when nft is missing), so no FIN, no RST, no "operation not
permitted" reaches anyone: packets just vanish, both ways.

Everything is removed on close: the processes started with `popen` (by pid),
the namespaces, the veths (they go with their namespace) and the bridge. A
network left behind by a killed test run (its pid gone) is removed by the next
one. `unavailable()` says why namespaces cannot be used here (not root, no
iproute2, `ip netns add` refused), for a pytest skip.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PREFIX = "sj"  # namespaces sj<pid><k>-<host>, bridge sj<pid><k>b, veths sj<pid><k>v<n> / sj<pid><k>p<n>
SUPERNET = "10.77"  # /24s are picked under 10.77.0.0/16
CUT_TABLE = "sjcut"


class HostsError(RuntimeError):
    pass


def _run(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise HostsError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def unavailable() -> str | None:
    """Why simulated hosts cannot be built on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if shutil.which("nft") is None and shutil.which("iptables") is None:
        return "neither nft nor iptables is installed (apt-get install nftables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    added = _run("ip", "netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"`ip netns add` is not permitted here: {added.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> None:
    """Remove namespaces and bridges of earlier runs whose process is gone (a killed pytest)."""
    pattern = re.compile(rf"^{PREFIX}(\d+)[a-z][-b]")
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = pattern.match(name)
        if match and not _alive(int(match.group(1))):
            _run("ip", "netns", "del", name, check=False)
    for line in _run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        match = pattern.match(name)
        if match and name.endswith("b") and not _alive(int(match.group(1))):
            _run("ip", "link", "del", name, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.77.0.0/16 that no address or route on this machine touches."""
    used = _run("ip", "-4", "route", "show", "table", "all", check=False).stdout
    used += _run("ip", "-4", "-o", "addr", "show", check=False).stdout
    start = os.getpid() % 200
    for i in range(250):
        third = (start + i) % 250 + 1
        if f"{SUPERNET}.{third}." not in used:
            return ipaddress.ip_network(f"{SUPERNET}.{third}.0/24")
    raise HostsError(f"no free /24 under {SUPERNET}.0.0/16")


class Host:
    """One simulated machine: a network namespace with one address on the bridge."""

    def __init__(self, network: Network, name: str, netns: str, address: str, interface: str, outer: str):
        self.network = network
        self.outer = outer  # the root namespace's end of the veth pair (on the bridge)
        self.name = name
        self.netns = netns
        self.address = address
        self.interface = interface  # the host's end of its veth pair, inside the namespace
        self.cut_at: float | None = None
        self.root_table = f"{CUT_TABLE}_{outer}"  # the root namespace's half of a cut

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace (`ip netns exec` execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(self.command(argv), **kwargs)
        self.network.processes.append(proc)
        return proc

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), capture_output=True, text=True, timeout=30, **kwargs)

    def cut(self) -> None:
        """Drop every packet in and out of this host, silently (no FIN, no RST): a partition.

        Both directions are dropped where they arrive: at the host's interface (ingress, inside
        its namespace) and at the bridge's end of its veth (ingress, in the root namespace). A
        drop on the way out (an egress or OUTPUT rule) would be reported to the sender's TCP as
        local congestion: keepalive probes would not count as lost, and connect() would fail at
        once with EPERM, neither of which a real partition does.
        """
        if shutil.which("nft"):
            # one table per host in the root namespace (several hosts may be cut at once)
            for command, table, device in ((self.command, CUT_TABLE, self.interface),
                                           (list, self.root_table, self.outer)):
                rules = (f"table netdev {table} {{\n  chain in {{\n    type filter hook ingress device \"{device}\" "
                         "priority -500; policy drop;\n  }\n}\n")
                done = subprocess.run(command(["nft", "-f", "-"]), input=rules, capture_output=True, text=True,
                                      timeout=30)
                if done.returncode != 0:
                    raise HostsError(f"cannot cut {self.name}: {done.stderr.strip()}")
        else:
            for argv in (self.command(["iptables", "-I", "INPUT", "-i", self.interface, "-j", "DROP"]),
                         ["iptables", "-I", "INPUT", "-m", "physdev", "--physdev-in", self.outer, "-j", "DROP"],
                         ["iptables", "-I", "FORWARD", "-m", "physdev", "--physdev-in", self.outer, "-j", "DROP"]):
                _run(*argv)
        self.cut_at = time.time()

    def heal(self) -> None:
        """Let packets through again. Connections that were not closed meanwhile carry on."""
        if shutil.which("nft"):
            self.run(["nft", "delete", "table", "netdev", CUT_TABLE])
            _run("nft", "delete", "table", "netdev", self.root_table, check=False)
        else:
            for argv in (self.command(["iptables", "-D", "INPUT", "-i", self.interface, "-j", "DROP"]),
                         ["iptables", "-D", "INPUT", "-m", "physdev", "--physdev-in", self.outer, "-j", "DROP"],
                         ["iptables", "-D", "FORWARD", "-m", "physdev", "--physdev-in", self.outer, "-j", "DROP"]):
                _run(*argv, check=False)
        self.cut_at = None


class Network:
    """A bridge in the root namespace and one namespace per host on it."""

    _made = 0  # networks made by this process: a letter in the names keeps them apart

    def __init__(self, names: list[str]):
        self.tag = f"{PREFIX}{os.getpid()}{chr(ord('a') + Network._made % 26)}"
        Network._made += 1
        self.bridge = f"{self.tag}b"
        self.subnet = _free_subnet()
        addresses = list(self.subnet.hosts())
        self.bridge_address = str(addresses[0])
        self.hosts: dict[str, Host] = {}
        self.processes: list[subprocess.Popen] = []
        self._names = list(names)
        self._addresses = addresses[1:]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> Network:
        sweep_stale()
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.bridge_address}/{self.subnet.prefixlen}", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for n, name in enumerate(self._names):
                self._add_host(n, name)
        except Exception:
            self.close()
            raise
        return self

    def _add_host(self, n: int, name: str) -> Host:
        netns, outer, inner = f"{self.tag}-{name}", f"{self.tag}v{n}", f"{self.tag}p{n}"
        address = str(self._addresses[n])
        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", outer, "master", self.bridge, "up")
        _run("ip", "link", "set", inner, "netns", netns)
        _run("ip", "-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", inner)
        _run("ip", "-n", netns, "link", "set", inner, "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        host = self.hosts[name] = Host(self, name, netns, address, inner, outer)
        return host

    def delay_proxy(self, target: tuple[str, int], delay: float, listen_port: int = 0) -> DelayProxy:
        """A delaying TCP forwarder on the bridge address in front of `target` (see delay_proxy.py)."""
        proxy = DelayProxy((self.bridge_address, listen_port), target, delay)
        self.processes.append(proxy.proc)
        return proxy

    def stop_processes(self, timeout: float = 15.0) -> None:
        """SIGTERM every process started through this network, then SIGKILL what is left."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for host in self.hosts.values():
            if host.cut_at is not None:
                host.heal()  # so the processes' SIGTERM shutdown can still reach the servers
        self.stop_processes()
        for host in self.hosts.values():
            _run("ip", "link", "del", host.outer, check=False)  # both ends at once (a namespace frees its own later)
            _run("ip", "netns", "del", host.netns, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        self.hosts.clear()


class DelayProxy:
    """tests/faults/delay_proxy.py as a process: `address` forwards to `target`, `delay` s each way."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], delay: float):
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.delay_proxy", "--listen", f"{listen[0]}:{listen[1]}",
             "--target", f"{target[0]}:{target[1]}", "--delay", str(delay)],
            cwd=root, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline().split()
        self.proc.stdout.close()  # it prints nothing else
        if len(line) != 2 or line[0] != "ready":
            self.proc.kill()
            raise HostsError(f"the delay proxy did not start: {line}")
        host, _, port = line[1].rpartition(":")
        self.host, self.port = host, int(port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
