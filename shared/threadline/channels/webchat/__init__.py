"""Web chat: the site's chat widget, over an API Gateway WebSocket API.

A visitor first asks ``POST /webchat/v1/sessions`` for a session: a visitor id and
a short-lived signed token naming it. The widget then opens the WebSocket API with
``?token=``; ``$connect`` checks the token and records the connection, ``$default``
takes the widget's frames (send, read, history), ``$disconnect`` forgets it.

One module per job:

- :mod:`.settings`: what template.yaml configures, limits, visitor ids;
- :mod:`.tokens`: the signed session token and ``user_hash`` verification (the
  scheme Intercom, Front and Chatwoot use);
- :mod:`.sessions`: ``POST /webchat/v1/sessions`` (:class:`WebchatSessions`), which
  links a verified visitor to the customer owning its e-mail or external id;
- :mod:`.socket`: the client frames and :class:`WebchatSocket` (``$connect``,
  ``$disconnect``, ``$default``);
- :mod:`.connections`: open connections and the rate counter, through the
  data-access layer (items built by ``threadline.items``);
- :mod:`.sender`: :class:`WebchatSender` (``PostToConnection`` to every open
  connection) and the delayed e-mail continuity of unseen replies.

A visitor is the identity ``webchat:<visitor_id>``. Its messages are stored through
the same store as every webhook's (a re-sent ``client_message_id`` meets the same
DEDUP item, provider ``webchat``, id ``<visitor_id>:<client_message_id>``). The
channel's declaration (:mod:`.spec`) names these modules.
"""
