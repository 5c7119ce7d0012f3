"""A small memcached client for bmc's Python tools (the demo's client, the guide's labs):
text commands over TCP, each batch ended by `mn` (meta no-op) so that its replies are
known complete at memcached's `MN`, and UDP gets with memcached's 8-byte frame header
(request id, sequence 0, 1 datagram), read until END."""
import socket
import struct
import time


def tcp_call(sock, cmd):
    """Sends text command(s); returns memcached's replies to them."""
    sock.sendall(cmd + b"mn\r\n")
    buf = b""
    while not buf.endswith(b"MN\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("memcached closed the connection")
        buf += chunk
    return buf[:-4]


def stat(sock, name):
    """One of memcached's `stats` as an int, or None if it has no such stat."""
    name = name.encode() if isinstance(name, str) else name
    for line in tcp_call(sock, b"stats\r\n").split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])
    return None


def udp_get(sock, req_id, key, timeout=0.5):
    """`get key` in one datagram on a connected UDP socket; the reply's text after the
    frame headers of the datagrams carrying req_id, up to END, or None on a timeout."""
    sock.send(struct.pack(">HHHH", req_id, 0, 1, 0) + b"get " + key + b"\r\n")
    text, deadline = b"", time.monotonic() + timeout
    while not text.endswith(b"END\r\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None
        if len(data) >= 8 and struct.unpack(">H", data[:2])[0] == req_id:
            text += data[8:]
    return text
