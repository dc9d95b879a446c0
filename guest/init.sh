#!/bin/sh
# /init of the kubevirt-py demo guest (busybox initramfs). PID 1: sets up the system,
# prints a banner on the serial console, starts DHCP, the guest agent and acpid, then
# keeps a shell on the console. The ACPI power button powers the guest off cleanly.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run /tmp /mnt /var/run /media/cloud-init
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run

hostname demo-guest
echo
echo "kubevirt-py demo guest"
echo "kernel $(uname -r) on $(uname -m)"

for m in $(cat /etc/modules); do insmod "/lib/modules/$m" 2>/dev/null; done

# cloud-init NoCloud/ConfigDrive (best effort): hostname from meta-data, run a #! user-data script
for dev in /dev/vd? /dev/sd? /dev/sr?; do
  [ -b "$dev" ] || continue
  [ -n "$(cat "/sys/block/${dev##*/}/serial" 2>/dev/null)" ] && continue  # a data disk: below
  if mount -t iso9660 -o ro "$dev" /media/cloud-init 2>/dev/null; then
    if [ -f /media/cloud-init/meta-data ]; then
      h=$(sed -n 's/^local-hostname: *//p' /media/cloud-init/meta-data)
      [ -n "$h" ] && hostname "$h"
      if head -c 2 /media/cloud-init/user-data 2>/dev/null | grep -q '#!'; then
        cp /media/cloud-init/user-data /run/user-data && chmod +x /run/user-data && /run/user-data
      fi
    fi
    umount /media/cloud-init
  elif [ ! -e /run/data-mounted ] && mount -t ext4 "$dev" /mnt 2>/dev/null; then
    touch /run/data-mounted  # the containerDisk's filesystem (lets fsfreeze act on something)
  fi
done

# data disks (PVCs): a virtio disk with a serial (KubeVirt's disks[].serial) is mounted at
# /data/<serial>; a blank one (first 64 KiB zero) is formatted first (busybox mke2fs: ext2,
# mounted by the ext4 driver). qemu-ga's guest-fsfreeze-freeze freezes it like every mount.
for blk in /sys/block/vd*; do
  [ -e "$blk" ] || continue
  serial=$(cat "$blk/serial" 2>/dev/null)
  [ -n "$serial" ] || continue
  dev=/dev/${blk##*/}
  mkdir -p "/data/$serial"
  if ! mount -t ext4 "$dev" "/data/$serial" 2>/dev/null; then
    if cmp -s -n 65536 "$dev" /dev/zero; then
      echo "data disk $serial: blank, formatting"
      mke2fs -q -L "$(echo "$serial" | cut -c1-16)" "$dev" >/dev/null 2>&1
      mount -t ext4 "$dev" "/data/$serial" 2>/dev/null
    fi
  fi
  if grep -q " /data/$serial " /proc/mounts; then
    echo "data disk $serial mounted on /data/$serial"
  else
    echo "data disk $serial: cannot mount $dev (not ext2/3/4, not blank)"
  fi
done

ip link set lo up
for nic in /sys/class/net/eth*; do
  [ -e "$nic" ] || continue
  n=${nic##*/}
  ip link set "$n" up
  udhcpc -i "$n" -s /etc/udhcpc.script -b -q -t 10 -T 1 >/dev/null 2>&1 &
done

# syslog in memory (logread shows it): qemu-ga logs its commands there, its fsfreeze hook the
# freeze and the thaw
syslogd -C128

for port in /sys/class/virtio-ports/*; do
  if [ "$(cat "$port/name" 2>/dev/null)" = "org.qemu.guest_agent.0" ]; then
    qemu-ga -d -m virtio-serial -p "/dev/${port##*/}" -t /run -f /run/qga.pid -l /run/qga.log -F/etc/qemu/fsfreeze-hook
    echo "guest agent started on /dev/${port##*/}"
  fi
done

acpid -c /etc/acpi -l /run/acpid.log

echo "demo guest ready"
while true; do
  setsid cttyhack sh -l
  sleep 1
done
