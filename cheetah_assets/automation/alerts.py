"""Alerts: a failed run, a MISSED send, an overdue metric snapshot, a send mailing recipients
suppressed too late to leave them out, by e-mail and/or a webhook.

Off unless configured. Every setting is an environment variable, read through Dagster's
``EnvVar`` (the SMTP password never appears in run config or logs):

==================================  =================================================================
variable                            meaning
==================================  =================================================================
CHEETAH_ALERT_WEBHOOK_URL           POST a JSON ``{"text", "title", "kind", "details"}`` here (Slack-
                                    and Teams-style incoming webhooks read ``text``); https:// only,
                                    except to loopback
CHEETAH_ALERT_SMTP_HOST             SMTP server for e-mail alerts (with ``_EMAIL_TO``)
CHEETAH_ALERT_SMTP_PORT             default 587
CHEETAH_ALERT_SMTP_STARTTLS         1 (default) or 0; 0 only for a server on loopback
CHEETAH_ALERT_SMTP_USER / _PASSWORD optional SMTP login
CHEETAH_ALERT_EMAIL_FROM            sender (default ``cheetah-assets@<host>``)
CHEETAH_ALERT_EMAIL_TO              comma-separated recipients
==================================  =================================================================
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Mapping
from urllib.parse import urlsplit

import dagster as dg
import requests
from pydantic import Field

from ..cheetah.settings import is_loopback_host

#: resource field -> environment variable
ALERT_ENV_VARS = {
    "webhook_url": "CHEETAH_ALERT_WEBHOOK_URL",
    "smtp_host": "CHEETAH_ALERT_SMTP_HOST",
    "smtp_port": "CHEETAH_ALERT_SMTP_PORT",
    "smtp_starttls": "CHEETAH_ALERT_SMTP_STARTTLS",
    "smtp_user": "CHEETAH_ALERT_SMTP_USER",
    "smtp_password": "CHEETAH_ALERT_SMTP_PASSWORD",
    "email_from": "CHEETAH_ALERT_EMAIL_FROM",
    "email_to": "CHEETAH_ALERT_EMAIL_TO",
}


class AlertDeliveryError(RuntimeError):
    """An alert could not be delivered on every configured channel (the message names which)."""


@dataclass(frozen=True)
class Alert:
    kind: str  # "run_failure", "missed_send", "overdue_snapshot", "suppressed_mailed"
    title: str
    text: str
    details: Mapping[str, object] = field(default_factory=dict)


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go: a webhook, SMTP e-mail, both, or nowhere (the default)."""

    webhook_url: str = Field(default="", description="Incoming-webhook URL (https://; http:// only to loopback).")
    smtp_host: str = Field(default="", description="SMTP server host; e-mail alerts need it and email_to.")
    smtp_port: str = Field(default="587", description="SMTP port.")
    smtp_starttls: str = Field(default="1", description="1: STARTTLS before login (required except on loopback).")
    smtp_user: str = Field(default="", description="SMTP login user (optional).")
    smtp_password: str = Field(default="", description="SMTP password (optional; set it with EnvVar).")
    email_from: str = Field(default="", description="Sender address.")
    email_to: str = Field(default="", description="Comma-separated recipient addresses.")
    timeout_seconds: float = Field(default=10.0, description="Timeout of each delivery.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AlertsResource":
        """An ``EnvVar`` for every alert variable set now; the others keep their defaults."""
        env = os.environ if env is None else env
        return cls(**{f: dg.EnvVar(var) for f, var in ALERT_ENV_VARS.items() if env.get(var, "").strip()})

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.email_to.split(",") if a.strip()]

    @property
    def channels(self) -> list[str]:
        out = []
        if self.webhook_url.strip():
            out.append("webhook")
        if self.smtp_host.strip() and self.recipients:
            out.append("email")
        return out

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    def notify(self, alert: Alert) -> list[str]:
        """Deliver ``alert`` on every configured channel; the channels it went to.

        Raises :class:`AlertDeliveryError` if any channel failed (after trying them all)."""
        delivered, problems = [], []
        for channel, send in (("webhook", self._post), ("email", self._mail)):
            if channel not in self.channels:
                continue
            try:
                send(alert)
                delivered.append(channel)
            except requests.RequestException as exc:  # its text holds the URL: the webhook's secret
                problems.append(f"{channel}: {self._webhook_problem(exc)}")
            except (OSError, smtplib.SMTPException, ValueError) as exc:
                problems.append(f"{channel}: {type(exc).__name__}: {exc}")
        if problems:
            raise AlertDeliveryError(f"Alert {alert.title!r} was not delivered by " + "; ".join(problems))
        return delivered

    def _webhook_host(self) -> str:
        """``scheme://host[:port]`` of the webhook: the only part of its URL fit for a message (the
        path and query of an incoming webhook are its secret)."""
        try:
            parts = urlsplit(self.webhook_url.strip())
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else "the webhook"
        except ValueError:
            return "the webhook"

    def _webhook_problem(self, exc: requests.RequestException) -> str:
        """What went wrong, without the URL that requests puts in every message."""
        response = getattr(exc, "response", None)
        if response is not None:
            reason = f" {response.reason}" if response.reason else ""
            return f"{type(exc).__name__}: {response.status_code}{reason} from {self._webhook_host()}"
        return f"{type(exc).__name__}: no answer from {self._webhook_host()}"

    def _post(self, alert: Alert) -> None:
        url = self.webhook_url.strip()
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname or "")):
            raise ValueError("CHEETAH_ALERT_WEBHOOK_URL must be https:// (plain http:// only to loopback)")
        body = {"text": f"{alert.title}\n{alert.text}", "title": alert.title, "kind": alert.kind,
                "details": json.loads(json.dumps(dict(alert.details), default=str))}
        reply = requests.post(url, json=body, timeout=self.timeout_seconds)
        reply.raise_for_status()

    def _mail(self, alert: Alert) -> None:
        host, port = self.smtp_host.strip(), int(self.smtp_port)
        starttls = self.smtp_starttls.strip().lower() not in ("0", "false", "no", "off")
        if not starttls and not is_loopback_host(host):
            raise ValueError("CHEETAH_ALERT_SMTP_STARTTLS=0 is only allowed for an SMTP server on loopback")
        msg = EmailMessage()
        msg["Subject"] = f"[cheetah_assets] {alert.title}"
        msg["From"] = self.email_from.strip() or f"cheetah-assets@{socket.gethostname()}"
        msg["To"] = ", ".join(self.recipients)
        lines = [alert.text, ""] + [f"{k}: {v}" for k, v in alert.details.items()]
        msg.set_content("\n".join(lines))
        with smtplib.SMTP(host, port, timeout=self.timeout_seconds) as smtp:
            if starttls:
                smtp.starttls()
            if self.smtp_user:
                smtp.login(self.smtp_user, self.smtp_password)
            smtp.send_message(msg)
