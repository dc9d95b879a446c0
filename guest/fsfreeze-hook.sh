#!/bin/sh
# qemu-ga's fsfreeze hook (qemu-ga -F): called with "freeze" before the guest's filesystems are
# frozen and with "thaw" after they are thawed. Records both in the guest's syslog (kept in
# memory: `logread` shows them), so a freeze and its thaw can be seen from inside the guest.
logger -t qemu-ga "fsfreeze-hook: $1"
