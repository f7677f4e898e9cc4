"""Telegram Bot API: updates in (:mod:`.inbound`), replies out (:mod:`.outbound`)."""
