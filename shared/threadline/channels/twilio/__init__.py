"""Twilio: SMS and WhatsApp messaging webhooks, delivery status callbacks and replies
(:mod:`.messaging`), voice calls and their recordings (:mod:`.voice`), and the
WhatsApp sender that picks Twilio or Meta's Cloud API (:mod:`.whatsapp`).
:mod:`.spec` declares the channels."""
