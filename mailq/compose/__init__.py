"""What is sent: the MIME message of an email, its templates, DKIM and unsubscribe links."""
