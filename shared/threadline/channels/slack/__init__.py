"""Slack: Events API in (:mod:`.events`, with the users.info directory that links a
Slack user to their e-mail), chat.postMessage out (:mod:`.outbound`). :mod:`.spec`
declares the channel."""
