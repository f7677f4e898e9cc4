"""E-mail: inbound mail parsed from SES receipt rules (:mod:`.inbound`), replies sent
with SES v2 (:mod:`.outbound`)."""

from threadline.channels.email.inbound import FILTER_AUTO_REPLY as FILTER_AUTO_REPLY
from threadline.channels.email.inbound import PROVIDER as PROVIDER
from threadline.channels.email.inbound import html_to_text as html_to_text
from threadline.channels.email.inbound import parse_email as parse_email
from threadline.channels.email.inbound import strip_quoted as strip_quoted
from threadline.channels.email.outbound import EmailSender as EmailSender
from threadline.channels.email.outbound import reply_subject as reply_subject
from threadline.channels.email.outbound import sender_from_env as sender_from_env
