"""The models shipped with jaxgames, one module per source (see MODELS.md)."""

from jaxgames.models import bakshi_kleindorfer as bakshi_kleindorfer
