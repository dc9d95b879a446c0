#!/bin/sh
# Run by busybox acpid on the ACPI power button (event PWRF): stop the agent, flush, power off.
echo "ACPI power button: powering off" > /dev/console
[ -f /run/qga.pid ] && kill "$(cat /run/qga.pid)" 2>/dev/null
sync
umount /mnt 2>/dev/null
for m in /data/*; do umount "$m" 2>/dev/null; done
poweroff -f
