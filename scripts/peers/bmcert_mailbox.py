"""aiosmtpd handler for the bmcert tests: writes each delivered message to a directory.

Used by scripts/peers/smtp.sh as `python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c
bmcert_mailbox.Mailbox DIR`. Each message becomes DIR/<n>.eml (written to a temporary name,
then renamed, so a reader never sees half a message) with the envelope recipients on a first
`X-Envelope-To:` line.
"""

import itertools
import os


class Mailbox:
    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("bmcert_mailbox.Mailbox takes one argument: the directory")
        return cls(args[0])

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        name = "%d-%06d.eml" % (os.getpid(), n)
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            content = envelope.original_content or envelope.content
            if isinstance(content, str):
                content = content.encode()
            f.write(content)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"
