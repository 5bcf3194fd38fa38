"""Outbound webhook requests (`http_sender.HttpWebhookSender`)."""
