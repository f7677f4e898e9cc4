"""One module per channel, each implementing :class:`~threadline.channels.base.ChannelAdapter`."""
