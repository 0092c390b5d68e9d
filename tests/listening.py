"""Which addresses a running server really listens on, read from the kernel with psutil."""

import ipaddress

import psutil


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by the process ``pid`` or any
    of its descendants (a launcher's server child, uvicorn's worker, nginx's workers).

    An IPv4-mapped IPv6 address (gRPC binds ``::ffff:127.0.0.1``) is given as its IPv4 form.
    """
    root = psutil.Process(pid)
    found: set[tuple[str, int]] = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            sockets = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        listening = [sock for sock in sockets if sock.status == psutil.CONN_LISTEN]
        found |= {(_unmapped(sock.laddr.ip), sock.laddr.port) for sock in listening}
    return found


def _unmapped(address: str) -> str:
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def assert_loopback_only(pid: int, port: int) -> None:
    """The server listens on ``port``, and on 127.0.0.1 only (no 0.0.0.0, no ::)."""
    addresses = listening_addresses(pid)
    assert port in {p for _, p in addresses}, f"not listening on {port}: {sorted(addresses)}"
    assert {address for address, _ in addresses} == {"127.0.0.1"}, sorted(addresses)
