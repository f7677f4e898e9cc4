"""Real-shaped MIME messages, as Gmail, Outlook and autoresponders send them."""

from __future__ import annotations

ALTERNATIVE = b"""\
Return-Path: <ada@example.com>
Received: from mail-ed1-f41.google.com (mail-ed1-f41.google.com [209.85.208.41])
Date: Mon, 23 Nov 2026 09:01:02 +0100
From: "Ada Lovelace" <Ada@Example.COM>
To: support@threadline.example
Message-ID: <CAH+abc123@mail.gmail.com>
Subject: My order has not arrived
MIME-Version: 1.0
X-SES-Spam-Verdict: PASS
X-SES-Virus-Verdict: PASS
Content-Type: multipart/alternative; boundary="000000000000b1"

--000000000000b1
Content-Type: text/plain; charset="UTF-8"

Hello, order #42 has not arrived. Caf\xc3\xa9?

--000000000000b1
Content-Type: text/html; charset="UTF-8"

<div dir="ltr">Hello, order #42 has not arrived. Caf\xc3\xa9?</div>

--000000000000b1--
"""

ATTACHMENT = b"""\
From: Ada Lovelace <ada@example.com>
To: support@threadline.example
Message-ID: <att-1@mail.example.com>
Subject: Photo of the damage
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: text/plain; charset=utf-8

See the attached photo.

--mixed
Content-Type: image/png
Content-Disposition: attachment; filename="damage.png"
Content-Transfer-Encoding: base64

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==

--mixed--
"""

GMAIL_REPLY = b"""\
From: Ada Lovelace <ada@example.com>
To: support@threadline.example
Message-ID: <CAH+reply2@mail.gmail.com>
In-Reply-To: <01000abc@email.amazonses.com>
References: <CAH+abc123@mail.gmail.com> <01000abc@email.amazonses.com>
Subject: Re: My order has not arrived
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

Thanks, it arrived today.

Ada
--=20
Ada Lovelace | Analytical Engines Ltd

On Mon, Nov 23, 2026 at 10:00 AM Threadline Support <support@threadline.example>
wrote:

> We have shipped it again.
>
> > Hello, order #42 has not arrived.
"""

OUTLOOK_REPLY = b"""\
From: Charles Babbage <charles@example.org>
To: support@threadline.example
Message-ID: <AM0PR01MB1234@AM0PR01MB.eurprd01.prod.outlook.com>
In-Reply-To: <01000def@email.amazonses.com>
Subject: RE: Invoice
Content-Type: text/plain; charset="us-ascii"

Please send it to accounts@example.org instead.

________________________________
From: Threadline Support <support@threadline.example>
Sent: Monday, November 23, 2026 10:00 AM
To: Charles Babbage <charles@example.org>
Subject: Invoice

Your invoice is attached.
"""

LATIN1 = b"""\
From: =?iso-8859-1?q?Fran=E7ois_Dupont?= <francois@example.fr>
To: support@threadline.example
Message-ID: <latin1@example.fr>
Subject: =?iso-8859-1?q?R=E9clamation?=
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: 8bit

Bonjour, le colis est arriv\xe9 ab\xeem\xe9.
"""

MALFORMED = b"""\
From: Broken Sender <broken@example.com>
To: "unterminated <support@threadline.example
Date: not a date at all
Message-ID: no angle brackets here
Subject: =?utf-8?q?half=encoded
Content-Type: text/plain; charset="x-unknown-charset"

Body with \xff\xfe bytes.
"""

AUTO_REPLY = b"""\
From: Ada Lovelace <ada@example.com>
To: support@threadline.example
Message-ID: <ooo-1@example.com>
Auto-Submitted: auto-replied
Subject: Out of office: Re: My order
Content-Type: text/plain

I am away until Monday.
"""

SPAM = b"""\
From: Winner <winner@spam.example>
To: support@threadline.example
Message-ID: <spam-1@spam.example>
X-SES-Spam-Verdict: FAIL
X-SES-Virus-Verdict: PASS
Subject: You won
Content-Type: text/plain

Click here.
"""

HTML_ONLY = b"""\
From: shop@example.com
To: support@threadline.example
Subject: Hi
Content-Type: text/html; charset=utf-8

<html><head><style>p{color:red}</style></head>
<body><p>Line one &amp; more</p><p>Line<br>two</p></body></html>
"""
