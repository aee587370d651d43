#!/bin/bash
# mc-nfs entrypoint: write ganesha.conf for the chosen FSAL, then run ganesha.nfsd in the
# foreground logging to stdout. FSAL_VFS only: it needs CAP_DAC_READ_SEARCH + CAP_SYS_ADMIN
# and an /export that is not overlayfs (a named volume, a tmpfs or a bind mount).
set -euo pipefail

FSAL=${MC_NFS_FSAL:-VFS}
LOG_LEVEL=${MC_NFS_LOG_LEVEL:-EVENT}
case "$FSAL" in
  VFS) ;;
  MEM) echo "mc-nfs: MC_NFS_FSAL=MEM is not supported: ganesha 4.3's FSAL_MEM keeps no file" \
            "contents (reads return 'a' bytes); use VFS with a volume or tmpfs on /export" >&2
       exit 2 ;;
  *) echo "mc-nfs: MC_NFS_FSAL must be VFS, got '$FSAL'" >&2; exit 2 ;;
esac

mkdir -p /export /var/run/ganesha /var/lib/nfs/ganesha
fstype=$(stat -f -c %T /export)
if [ "$fstype" = overlayfs ] || [ "$fstype" = overlay ]; then
  echo "mc-nfs: FSAL VFS cannot export an overlay directory; mount a named volume or" \
       "tmpfs on /export" >&2
  exit 2
fi
cap_eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
need=$(( (1 << 21) | (1 << 2) ))  # CAP_SYS_ADMIN | CAP_DAC_READ_SEARCH
if [ $(( 0x$cap_eff & need )) -ne "$need" ]; then
  echo "mc-nfs: FSAL VFS needs --cap-add SYS_ADMIN --cap-add DAC_READ_SEARCH" >&2
  exit 2
fi
chmod 0777 /export

cat >/etc/ganesha/ganesha.conf <<CONF
NFS_CORE_PARAM {
    Protocols = 4;
    NFS_Port = 2049;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}
NFS_KRB5 { Active_krb5 = false; }
NFSv4 {
    Graceless = true;
    Lease_Lifetime = ${MC_NFS_LEASE_LIFETIME:-10};
    RecoveryBackend = fs;
    Only_Numeric_Owners = true;
}
EXPORT_DEFAULTS {
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
}
EXPORT {
    Export_Id = 1;
    Path = /export;
    Pseudo = /export;
    Protocols = 4;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = $FSAL; }
}
LOG {
    Default_Log_Level = $LOG_LEVEL;
    Components { ALL = $LOG_LEVEL; }
}
CONF

echo "mc-nfs: starting ganesha.nfsd (FSAL $FSAL)"
exec ganesha.nfsd -F -L /dev/stdout -f /etc/ganesha/ganesha.conf -N "NIV_$LOG_LEVEL" \
  -p /var/run/ganesha/ganesha.pid "$@"
