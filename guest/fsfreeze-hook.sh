#!/bin/sh
# qemu-ga's fsfreeze hook (qemu-ga -F): called with "freeze" before the guest's filesystems are
# frozen and with "thaw" after they are thawed. Records both in the guest's syslog (kept in
# memory: `logread` shows them), so a freeze and its thaw can be seen from inside the guest.
# For tests of a crash between freeze and thaw: when /run/fsfreeze-hold holds a number of
# seconds (at most 120), the next freeze waits that long after it is logged (the file is consumed).
logger -t qemu-ga "fsfreeze-hook: $1"
if [ "$1" = freeze ] && [ -f /run/fsfreeze-hold ]; then
  hold=$(cat /run/fsfreeze-hold)
  rm -f /run/fsfreeze-hold
  case "$hold" in ''|*[!0-9]*) hold=0 ;; esac
  [ "$hold" -gt 120 ] && hold=120
  logger -t qemu-ga "fsfreeze-hook: holding the freeze for $hold s"
  sleep "$hold"
fi
exit 0
