"""Small PNG line plots drawn with Pillow (no plotting library needed), e.g. how the softmax
weights of every searched layer evolve over a search."""

from __future__ import annotations

from PIL import Image, ImageDraw

from .io import atomic_path

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def save_line_panels(panels, path, y_range=(0.0, 1.0), panel_size=(290, 150), columns=4, x_label="iteration"):
    """Draw ``panels`` = [(title, {label: [y per x]})] as a grid of line plots into ``path``
    (PNG, written atomically). Lines keep their colour per label across panels."""
    if not panels:
        raise ValueError("save_line_panels: nothing to plot")
    width, height = panel_size
    rows = (len(panels) + columns - 1) // columns
    cols = min(columns, len(panels))
    image = Image.new("RGB", (cols * width, rows * height), "white")
    draw = ImageDraw.Draw(image)
    colours = {}
    y0, y1 = y_range
    for index, (title, series) in enumerate(panels):
        left, top = (index % columns) * width, (index // columns) * height
        box = (left + 30, top + 18, left + width - 8, top + height - 34)  # plot area
        draw.rectangle(box, outline=(160, 160, 160))
        draw.text((left + 30, top + 4), title, fill="black")
        draw.text((left + 2, box[1] - 4), f"{y1:g}", fill=(90, 90, 90))
        draw.text((left + 2, box[3] - 8), f"{y0:g}", fill=(90, 90, 90))
        length = max((len(v) for v in series.values()), default=0)
        draw.text((box[2] - 60, box[3] + 2), f"{x_label} {length}", fill=(90, 90, 90))
        legend_x = left + 30
        for label, values in series.items():
            colour = colours.setdefault(label, PALETTE[len(colours) % len(PALETTE)])
            if len(values) > 1:
                points = [(box[0] + (box[2] - box[0]) * i / (len(values) - 1),
                           box[3] - (box[3] - box[1]) * (min(max(v, y0), y1) - y0) / (y1 - y0))
                          for i, v in enumerate(values)]
                draw.line(points, fill=colour, width=2)
            elif values:
                y = box[3] - (box[3] - box[1]) * (min(max(values[0], y0), y1) - y0) / (y1 - y0)
                draw.ellipse((box[0] - 2, y - 2, box[0] + 2, y + 2), fill=colour)
            text = str(label)
            draw.rectangle((legend_x, box[3] + 18, legend_x + 8, box[3] + 26), fill=colour)
            draw.text((legend_x + 10, box[3] + 16), text, fill="black")
            legend_x += 16 + 6 * len(text)
    save_image_atomic(image, path)


def save_image_atomic(image, path):
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
