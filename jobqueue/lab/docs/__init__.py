"""The docs tooling: the studies behind docs/questions.md and the plots in docs/.

``studies`` runs the experiments that ``python -m examples.questions`` saves as
docs/questions.json; ``plots`` draws the SVG figures of docs/ from the committed
JSON (``make docs``).  Neither is part of a stage.
"""
