"""Meta: WhatsApp Cloud API, Messenger and Instagram messaging, one webhook for all three.

One module per job:

- :mod:`.webhook`: ``GET|POST /webhooks/meta``: the subscription handshake, the
  ``X-Hub-Signature-256`` check and the adapter, which hands each notification to
- :mod:`.whatsapp` (``whatsapp_business_account``) or :mod:`.messenger` (``page`` and
  ``instagram``), which turn it into drafts, status updates and edits;
- :mod:`.senders`: replies through the Graph API send endpoints (:mod:`.graph`);
- :mod:`.media`: WhatsApp media, downloaded on demand by the API;
- :mod:`.payload`: reading Meta's JSON defensively (a bad value is a 400, never a 500).

Identities: a WhatsApp sender's ``wa_id`` is the ``phone`` identity in E.164, the
same as their SMS and Twilio WhatsApp; Messenger and Instagram senders are
``messenger:<PSID>`` and ``instagram:<IGSID>``. The channels' declarations
(:mod:`.spec`, and ``twilio.spec`` for WhatsApp) name these modules.
"""
