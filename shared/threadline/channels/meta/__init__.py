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
``messenger:<PSID>`` and ``instagram:<IGSID>``. The channels' registry entries
(``threadline.channels.registry``) name these modules.
"""

from threadline.channels.meta.payload import PROVIDER as PROVIDER
from threadline.channels.meta.webhook import MetaWebhook as MetaWebhook
from threadline.channels.meta.webhook import normalize_notification as normalize_notification
from threadline.channels.meta.webhook import signature_of as signature_of
from threadline.channels.meta.webhook import verify_signature as verify_signature
