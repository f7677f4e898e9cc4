"""Twilio Programmable Voice webhooks as Twilio posts them.

Written from Twilio's "Voice Webhooks" and TwiML pages: the request to a number's
voice URL ("TwiML Voice: Twilio's Request": ``CallSid``, ``AccountSid``, ``From``,
``To``, ``CallStatus``, ``ApiVersion``, ``Direction``, ``CallerName``, geographic
``From*``/``To*``), the call status callback (adds ``CallDuration``, ``Timestamp``,
``CallbackSource``, ``SequenceNumber``), the ``<Dial>`` action (``DialCallStatus``,
``DialCallSid``, ``DialCallDuration``, ``DialBridged``), the ``<Record>`` action
(``RecordingUrl``, ``RecordingDuration``, ``RecordingSid``, ``Digits``), the
``recordingStatusCallback`` (``AccountSid``, ``CallSid``, ``RecordingSid``,
``RecordingUrl``, ``RecordingStatus``, ``RecordingDuration``, ``RecordingChannels``,
``RecordingStartTime``, ``RecordingSource``, ``RecordingTrack``: no ``From``), and
``transcribeCallback`` (``TranscriptionSid``, ``TranscriptionText``,
``TranscriptionStatus``, ``TranscriptionUrl``, ``RecordingSid``, ``RecordingUrl`` plus
the call's parameters). Every value is a string, form-encoded. All SIDs and numbers
are fake.
"""

from __future__ import annotations

from tests.unit.twilio_payloads import ACCOUNT_SID, sid

CALLER = "+15555550123"  # the same customer as the SMS payloads
BUSINESS = "+15555550100"
CALL_SID = sid("CA", 7)
RECORDING_SID = sid("RE", 7)
TRANSCRIPTION_SID = sid("TR", 7)
RECORDING_URL = (
    f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}"
)
VOICE_PATH = "/webhooks/twilio/voice"

INCOMING: dict[str, str] = {
    "AccountSid": ACCOUNT_SID,
    "ApiVersion": "2010-04-01",
    "CallSid": CALL_SID,
    "CallStatus": "ringing",
    "Called": BUSINESS,
    "CalledCity": "SAN FRANCISCO",
    "CalledCountry": "US",
    "CalledState": "CA",
    "CalledZip": "94105",
    "Caller": CALLER,
    "CallerCity": "OAKLAND",
    "CallerCountry": "US",
    "CallerState": "CA",
    "CallerZip": "94612",
    "Direction": "inbound",
    "From": CALLER,
    "FromCity": "OAKLAND",
    "FromCountry": "US",
    "FromState": "CA",
    "FromZip": "94612",
    "To": BUSINESS,
    "ToCity": "SAN FRANCISCO",
    "ToCountry": "US",
    "ToState": "CA",
    "ToZip": "94105",
}
DIAL_NO_ANSWER: dict[str, str] = {
    **INCOMING,
    "CallStatus": "in-progress",
    "DialCallSid": sid("CA", 8),
    "DialCallStatus": "no-answer",
    "DialBridged": "false",
}
DIAL_ANSWERED: dict[str, str] = {
    **INCOMING,
    "CallStatus": "in-progress",
    "DialCallSid": sid("CA", 8),
    "DialCallStatus": "completed",
    "DialCallDuration": "125",
    "DialBridged": "true",
}
STATUS_COMPLETED: dict[str, str] = {
    **INCOMING,
    "CallStatus": "completed",
    "CallDuration": "42",
    "Duration": "1",
    "Timestamp": "Mon, 23 Nov 2026 07:17:31 +0000",
    "CallbackSource": "call-progress-events",
    "SequenceNumber": "0",
}
STATUS_NO_ANSWER: dict[str, str] = {
    **STATUS_COMPLETED,
    "CallStatus": "no-answer",
    "CallDuration": "0",
}
RECORD_ACTION: dict[str, str] = {
    **INCOMING,
    "CallStatus": "completed",
    "RecordingUrl": RECORDING_URL,
    "RecordingDuration": "14",
    "RecordingSid": RECORDING_SID,
    "Digits": "hangup",
}
RECORDING_STATUS: dict[str, str] = {
    "AccountSid": ACCOUNT_SID,
    "CallSid": CALL_SID,
    "RecordingSid": RECORDING_SID,
    "RecordingUrl": RECORDING_URL,
    "RecordingStatus": "completed",
    "RecordingDuration": "14",
    "RecordingChannels": "1",
    "RecordingStartTime": "Mon, 23 Nov 2026 07:17:05 +0000",
    "RecordingSource": "RecordVerb",
    "RecordingTrack": "both",
    "ErrorCode": "0",
}
TRANSCRIPTION: dict[str, str] = {
    **INCOMING,
    "CallStatus": "completed",
    "TranscriptionSid": TRANSCRIPTION_SID,
    "TranscriptionText": "Hi, it's Ada, my parcel never came, please call me back.",
    "TranscriptionStatus": "completed",
    "TranscriptionUrl": (
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Transcriptions/{TRANSCRIPTION_SID}"
    ),
    "TranscriptionType": "fast",
    "RecordingSid": RECORDING_SID,
    "RecordingUrl": RECORDING_URL,
    "url": "https://hooks.example.com/webhooks/twilio/voice/transcription",
}
TRANSCRIPTION_FAILED: dict[str, str] = {
    **TRANSCRIPTION,
    "TranscriptionStatus": "failed",
    "TranscriptionText": "",
}
