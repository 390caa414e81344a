#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) that keeps what it receives, for the
release tests: each message becomes N.eml (the DATA bytes exactly as
received, dot-unstuffed) and N.json (envelope).

usage: sink.py PORT OUTDIR [--fail-first N]
With --fail-first N the first N transactions are answered 451 at DATA.
RCPT TO:<refused@…> is answered 550 (an unknown user at the relay).
"""
import asyncio, json, os, sys
from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, out, fail_first):
        self.out = out
        self.count = 0
        self.fail_left = fail_first

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # An address that does not exist at the relay: refused for good.
        if address.lower().startswith("refused@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0:
            self.fail_left -= 1
            return "451 4.3.0 sink told to fail"
        self.count += 1
        base = os.path.join(self.out, "%06d" % self.count)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 kept"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    fail_first = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--fail-first" else 0
    os.makedirs(out, exist_ok=True)
    # decode_data=False keeps the bytes; no SMTPUTF8 refusal; big messages ok.
    c = Controller(Keep(out, fail_first), hostname="127.0.0.1", port=port,
                   data_size_limit=None, enable_SMTPUTF8=True)
    c.start()
    print("sink listening on %d" % port, flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()


if __name__ == "__main__":
    main()
