"""An aiosmtpd that requires authentication, for crates/bmcert-renew/tests/smtp_auth.rs.

usage: /usr/bin/python3 auth_smtpd.py PORT MAILDIR LOG [CERT KEY]

Listens on 127.0.0.1:PORT and writes each delivered message to MAILDIR with the Mailbox
handler of scripts/peers/bmcert_mailbox.py. The accepted user name and password come from the
environment (BMCERT_TEST_SMTP_USER, BMCERT_TEST_SMTP_PASSWORD), not from the command line.

- Without CERT and KEY: no TLS; AUTH is offered on the plain connection
  (auth_require_tls=False) and required before MAIL.
- With CERT and KEY: STARTTLS is offered and required, and AUTH only after it (aiosmtpd's
  default auth_require_tls=True).

Every authentication attempt appends "MECHANISM ok|refused LOGIN" to LOG. Prints "ready" once
it listens, then runs until it is killed.
"""

import os
import ssl
import sys
import threading

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "scripts", "peers")
)

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402
from bmcert_mailbox import Mailbox  # noqa: E402

port, maildir, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
user = os.environ["BMCERT_TEST_SMTP_USER"].encode()
password = os.environ["BMCERT_TEST_SMTP_PASSWORD"].encode()


def authenticator(server, session, envelope, mechanism, auth_data):
    login = b"?"
    ok = False
    if isinstance(auth_data, LoginPassword):
        login = auth_data.login
        ok = auth_data.login == user and auth_data.password == password
    with open(log, "a") as f:
        f.write("%s %s %s\n" % (mechanism, "ok" if ok else "refused", login.decode(errors="replace")))
    return AuthResult(success=ok, handled=False)


kwargs = dict(authenticator=authenticator, auth_required=True)
if len(sys.argv) > 4:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    kwargs.update(tls_context=context, require_starttls=True)
else:
    kwargs.update(auth_require_tls=False)

controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
threading.Event().wait()
