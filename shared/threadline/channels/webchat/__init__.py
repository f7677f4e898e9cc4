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
channel's registry entry (``threadline.channels.registry``) names these modules.
"""

from threadline.channels.webchat.sender import WebchatSender as WebchatSender
from threadline.channels.webchat.sender import build_sender as build_sender
from threadline.channels.webchat.sender import continuation_job as continuation_job
from threadline.channels.webchat.sender import continue_by_email as continue_by_email
from threadline.channels.webchat.sessions import SessionRequest as SessionRequest
from threadline.channels.webchat.sessions import VerificationRequired as VerificationRequired
from threadline.channels.webchat.sessions import WebchatSessions as WebchatSessions
from threadline.channels.webchat.sessions import parse_session_request as parse_session_request
from threadline.channels.webchat.sessions import verified_subject as verified_subject
from threadline.channels.webchat.settings import MAX_FRAME_BYTES as MAX_FRAME_BYTES
from threadline.channels.webchat.settings import PROVIDER as PROVIDER
from threadline.channels.webchat.settings import WebchatSettings as WebchatSettings
from threadline.channels.webchat.settings import webchat_settings as webchat_settings
from threadline.channels.webchat.socket import FrameError as FrameError
from threadline.channels.webchat.socket import HistoryFrame as HistoryFrame
from threadline.channels.webchat.socket import ReadFrame as ReadFrame
from threadline.channels.webchat.socket import SendFrame as SendFrame
from threadline.channels.webchat.socket import WebchatSocket as WebchatSocket
from threadline.channels.webchat.socket import parse_frame as parse_frame
from threadline.channels.webchat.socket import public_message as public_message
from threadline.channels.webchat.tokens import InvalidToken as InvalidToken
from threadline.channels.webchat.tokens import read_token as read_token
from threadline.channels.webchat.tokens import sign_token as sign_token
from threadline.channels.webchat.tokens import user_hash as user_hash
from threadline.channels.webchat.tokens import user_hash_matches as user_hash_matches
