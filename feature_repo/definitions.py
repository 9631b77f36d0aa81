"""The Feast definitions of this repository, for Feast's own CLI (`feast -c feature_repo ...`).

They live in the package, `mrse.features.feast_definitions`, so that the platform finds them
wherever it is installed (a wheel, another folder); Feast registers the objects it finds here.
"""

from mrse.features.feast_definitions import (  # noqa: F401 (Feast scans this module's names)
    mrse_v1,
    text_tower_v1,
    user,
    user_profile_fresh,
    user_profile_push,
)
