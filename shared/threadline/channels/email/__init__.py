"""E-mail: inbound mail parsed from SES receipt rules (:mod:`.inbound`), replies sent
with SES v2 (:mod:`.outbound`)."""
