# Sourced by scripts/test-all: starts a real SMTP server (aiosmtpd, Debian's python3-aiosmtpd)
# on loopback for the bmcert-renew warning tests. Every delivered message is written to a
# directory by scripts/peers/bmcert_mailbox.py. The started process is appended to the
# caller's PIDS array, which its EXIT trap stops.
#
# Exported to the tests:
#   BMCERT_SMTP_PORT     the port aiosmtpd listens on (127.0.0.1)
#   BMCERT_SMTP_MAILDIR  the directory holding one .eml file per delivered message

smtp_python=/usr/bin/python3 # Debian's python, where python3-aiosmtpd installs
if ! "$smtp_python" -c 'import aiosmtpd' 2>/dev/null; then
    echo "smtp.sh: installing python3-aiosmtpd"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-aiosmtpd >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-aiosmtpd >/dev/null; }
fi
smtp_dir="$(mktemp -d /tmp/bmcert-smtp.XXXXXX)"
smtp_port=2525
mkdir -p "$smtp_dir/mail"
PYTHONPATH="$(pwd)/scripts/peers" "$smtp_python" -m aiosmtpd -n -l "127.0.0.1:$smtp_port" \
    -c bmcert_mailbox.Mailbox "$smtp_dir/mail" >"$smtp_dir/aiosmtpd.log" 2>&1 &
smtp_pid=$!
PIDS+=($smtp_pid)
# Wait (bounded) until it answers, and make sure the answer is from the process started here.
smtp_ok=
for _ in $(seq 1 100); do
    if ! kill -0 "$smtp_pid" 2>/dev/null; then
        break
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null; then
        smtp_ok=1
        break
    fi
    sleep 0.1
done
if [ -z "$smtp_ok" ] || ! kill -0 "$smtp_pid" 2>/dev/null; then
    echo "smtp.sh: aiosmtpd did not start on port $smtp_port (busy?); log in $smtp_dir/aiosmtpd.log" >&2
    return 1
fi
export BMCERT_SMTP_PORT="$smtp_port"
export BMCERT_SMTP_MAILDIR="$smtp_dir/mail"
echo "smtp.sh: aiosmtpd on 127.0.0.1:$smtp_port, messages in $BMCERT_SMTP_MAILDIR"
