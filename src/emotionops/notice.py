"""The lawful-use notice every page of the platform shows (API pages, dashboard, static report)."""

LAWFUL_USE = (
    "Lawful use only. Emotion recognition of people in a venue needs clear signage telling "
    "visitors before they enter a camera's view. It must not be used on employees at work or "
    "in education (EU AI Act, Art. 5(1)(f)). The labels estimate facial expressions, not "
    "what a person feels."
)
