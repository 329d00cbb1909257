"""Where email goes: the Sender seam, its backends (SMTP, local) and what a reply means."""
