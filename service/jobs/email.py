"""``email.send``: one message over SMTP (plain, STARTTLS or SMTPS), or to the outbox folder.

The ``Message-ID`` is made from the job id, so every attempt of a job sends the same
message and a receiving system can drop a duplicate. Temporary failures (4xx replies,
lost connections, timeouts) raise :class:`TemporaryMailError` and are retried with
backoff; permanent ones (5xx) raise :class:`PermanentMailError` and fail at once with
the server's reply. With no ``SMTP_URL`` the message is written to ``OUTBOX_DIR``.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from pathlib import Path

from marshmallow import Schema, ValidationError, fields, validate

from adapters import JobContext, job
from service import config

from ._filestore import write_atomically

__all__ = ["EmailSchema", "TemporaryMailError", "PermanentMailError", "send_email",
           "build_message", "message_id"]

MAX_RECIPIENTS = 100


class TemporaryMailError(Exception):
    """The mail could not be handed over now; a later attempt may succeed."""


class PermanentMailError(Exception):
    """The server refused the mail for good (a 5xx reply), or it can never be sent."""


# Everything Python's email package takes for a line break (str.splitlines: \x0b, \x0c,
# \x1c-\x1e, \x85, U+2028, U+2029 besides \r and \n) and every other control character:
# in a header each either fails the send at run time or splits the header.
_NOT_IN_A_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


# The same rules as JSON schema patterns, for the spec (and so for generated clients).
_HEADER_PATTERN = r"^[^\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]*$"
_ADDRESS_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"


def _no_line_breaks(value: str) -> None:
    """A header's value: one line, no control characters (a tab is folding white space)."""
    match = _NOT_IN_A_HEADER.search(value)
    if match:
        raise ValidationError(f"must be a single line without control characters "
                              f"(found U+{ord(match.group()):04X} at {match.start()})")


def _single_address(value: str) -> None:
    _no_line_breaks(value)
    if "\t" in value:
        raise ValidationError("must be a single line without control characters (found a tab)")


class Recipients(fields.Field):
    """One address or a list of addresses; loads as a list."""

    default_error_messages = {"invalid": "must be an address or a list of addresses",
                              "empty": "needs at least one address",
                              "too_many": f"at most {MAX_RECIPIENTS} addresses"}

    def _deserialize(self, value, attr, data, **kwargs):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self.make_error("invalid")
        if not items:
            raise self.make_error("empty")
        if len(items) > MAX_RECIPIENTS:
            raise self.make_error("too_many")
        check = validate.Email()
        errors = {}
        for index, item in enumerate(items):
            try:
                check(item)
                _single_address(item)
            except ValidationError as exc:
                errors[index] = exc.messages
        if errors:
            raise ValidationError(errors)
        return list(dict.fromkeys(items))


class EmailSchema(Schema):
    """The payload of ``email.send``."""

    to = Recipients(required=True, metadata={
        "description": "an address or a list of them",
        "oneOf": [{"type": "string", "format": "email", "pattern": _ADDRESS_PATTERN},
                  {"type": "array", "minItems": 1, "maxItems": MAX_RECIPIENTS,
                   "items": {"type": "string", "format": "email", "pattern": _ADDRESS_PATTERN}}]})
    subject = fields.String(required=True, validate=[validate.Length(1, 998), _no_line_breaks],
                            metadata={"pattern": _HEADER_PATTERN})
    text = fields.String(required=True, validate=validate.Length(max=1_000_000))
    html = fields.String(allow_none=True, validate=validate.Length(max=2_000_000))
    reply_to = fields.Email(allow_none=True, validate=_single_address,
                            metadata={"pattern": _ADDRESS_PATTERN})


SCHEMA = EmailSchema()


def message_id(job_id: str, domain: str) -> str:
    """The ``Message-ID`` of the job's message: the same on every attempt."""
    return f"<{job_id}@{domain}>"


def build_message(job_id: str, data: dict, settings: config.MailSettings) -> EmailMessage:
    """The message for a loaded payload."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = ", ".join(data["to"])
    msg["Subject"] = data["subject"]
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(job_id, settings.message_id_domain)
    if data.get("reply_to"):
        msg["Reply-To"] = data["reply_to"]
    msg.set_content(data["text"])
    if data.get("html"):
        msg.add_alternative(data["html"], subtype="html")
    return msg


def _reply(code: int, text) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(str(text).split())}".strip()


def classify(exc: BaseException, where: str) -> Exception:
    """The temporary or permanent error an SMTP failure stands for."""
    if isinstance(exc, (TemporaryMailError, PermanentMailError)):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = {rcpt: _reply(code, text) for rcpt, (code, text) in exc.recipients.items()}
        detail = "; ".join(f"{rcpt}: {reply}" for rcpt, reply in replies.items())
        temporary = any(400 <= code < 500 for code, _ in exc.recipients.values())
        cls = TemporaryMailError if temporary else PermanentMailError
        return cls(f"{where} refused the recipients: {detail}")
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _reply(exc.smtp_code, exc.smtp_error)
        if 500 <= exc.smtp_code < 600:
            return PermanentMailError(f"{where} answered {reply}")
        return TemporaryMailError(f"{where} answered {reply}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentMailError(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentMailError(f"{where}: the server's certificate cannot be trusted: "
                                  f"{exc.verify_message or exc}")
    if isinstance(exc, (smtplib.SMTPServerDisconnected, OSError)):
        return TemporaryMailError(f"{where}: {type(exc).__name__}: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        return TemporaryMailError(f"{where}: {exc}")
    return exc


def _connect(settings: config.MailSettings) -> smtplib.SMTP:
    server = settings.smtp
    tls = ssl.create_default_context()
    if server.security == "smtps":
        client = smtplib.SMTP_SSL(server.host, server.port, local_hostname=settings.helo_name,
                                  timeout=settings.timeout, context=tls)
    else:
        client = smtplib.SMTP(server.host, server.port, local_hostname=settings.helo_name,
                              timeout=settings.timeout)
    try:
        if server.security == "starttls":
            client.ehlo()
            if not client.has_extn("starttls"):
                raise PermanentMailError(f"{server.describe()} does not offer STARTTLS")
            client.starttls(context=tls)
            client.ehlo()
        if server.username:
            client.login(server.username, server.password or "")
    except BaseException:
        client.close()
        raise
    return client


def send_smtp(msg: EmailMessage, recipients: list[str], settings: config.MailSettings) -> dict:
    """Hand ``msg`` to the SMTP server; raises Temporary/PermanentMailError."""
    where = settings.smtp.describe()
    try:
        client = _connect(settings)
        try:
            refused = client.send_message(msg, from_addr=settings.sender_address,
                                          to_addrs=recipients)
        except BaseException:
            client.close()
            raise
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()  # the server has the message; a lost goodbye changes nothing
    except Exception as exc:
        error = classify(exc, where)
        if error is exc:
            raise
        raise error from exc
    return {
        "transport": "smtp",
        "server": where,
        "message_id": msg["Message-ID"],
        "accepted": [r for r in recipients if r not in refused],
        "refused": {r: _reply(code, text) for r, (code, text) in refused.items()},
    }


def write_outbox(msg: EmailMessage, job_id: str, outbox: Path) -> dict:
    """Write ``msg`` to ``outbox/<job id>.eml`` (a retry overwrites the same file)."""
    path = outbox / f"{job_id}.eml"
    write_atomically(path, msg.as_bytes(policy=SMTP_POLICY))
    return {"transport": "outbox", "path": path.name, "message_id": msg["Message-ID"]}


@job("email.send", max_retries=5, retry_on=(TemporaryMailError,),
     retry_backoff=config.env_seconds("SMTP_RETRY_BACKOFF", 30.0), retry_backoff_max=3600,
     timeout=300, schema=SCHEMA)
def send_email(ctx: JobContext, **payload) -> dict:
    """Send one email (to, subject, text, optional html and reply_to)."""
    try:
        data = SCHEMA.load(payload)
    except ValidationError as exc:
        raise PermanentMailError(f"invalid payload: {exc.messages}") from None
    settings = config.mail_settings()
    msg = build_message(ctx.job_id, data, settings)
    if settings.smtp is None:
        result = write_outbox(msg, ctx.job_id, settings.outbox_dir)
    else:
        result = send_smtp(msg, data["to"], settings)
    return {**result, "to": data["to"], "attempt": ctx.attempt}


config.mail_settings()  # validate SMTP_URL and say where mail goes when a worker starts
