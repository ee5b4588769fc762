"""The neighbour who listens: every frame on one interface, appended to a file, until SIGTERM.

Run inside a network namespace (`ip netns exec NS python sniff.py IFACE OUT`): it prints
"listening" once its packet socket is bound, so the caller knows frames from then on are kept.
A raw AF_PACKET socket stands for tcpdump, which this machine does not have.
"""

import signal
import socket
import sys

ETH_P_ALL = 0x0003


def main() -> None:
    iface, out_path = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(out_path, "wb") as out:
        print("listening", flush=True)
        while True:
            out.write(sock.recv(1 << 18))
            out.flush()


if __name__ == "__main__":
    main()
