"""The realtime side of the portal: each user's persisted event stream (``stream``), the rules that
decide at delivery time whether a stored event may still reach a user (``delivery``), the control
messages that close or re-check sockets (``control``), whether a user has a socket open (``presence``)
and the one websocket consumer (``consumer``).

Nothing here is imported by the apps that produce events: they publish ``portal.events`` and this
package subscribes (``connect``, called from the messaging app's ``ready``).
"""


def connect() -> None:
    """Subscribe the stream (child and addressed events) and the control messages to ``portal.events``."""
    from messaging.realtime import control, stream
    from portal import events

    events.subscribe(stream.on_event)
    events.subscribe(control.on_event)
