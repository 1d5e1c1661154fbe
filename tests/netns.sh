#!/usr/bin/env bash
# Runs a command inside a fresh network namespace with loopback and one veth
# interface (192.0.2.2/24, default route). WebRTC in headless Chromium needs
# a non-loopback interface for host candidates, and the namespace keeps the
# browser's start-up traffic off the machine's network. Needs root.
set -euo pipefail
exec unshare -n -- bash -c '
  set -e
  ip link set lo up
  ip link add veth0 type veth peer name veth1
  ip addr add 192.0.2.2/24 dev veth0
  ip link set veth0 up
  ip link set veth1 up
  ip route add default dev veth0
  exec "$@"' netns "$@"
