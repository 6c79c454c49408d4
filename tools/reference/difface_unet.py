"""DifFace's UNet wiring, built from guided-diffusion-sdk's blocks.

guided-diffusion-sdk's `UNetModel` takes one int for num_res_blocks and
attention resolutions as downsample ratios. DifFace's FFHQ 512 prior
(METHOD.md §4) needs a per-level list `[1,2,2,2,2,3,4]` and names attention
resolutions as feature sizes in pixels (32, 16, 8). This module does only the
wiring; every block (ResBlock, AttentionBlock, Downsample, Upsample,
TimestepEmbedSequential, timestep_embedding, GroupNorm32) is the SDK's, so the
state-dict keys are exactly the checkpoint's (without its `module.` prefix).

Where the SDK is not pip-installed (the GPU machine reaches no registry), set
GUIDED_DIFFUSION_SRC to a directory that contains the `guided_diffusion`
package source (see README.md: `stage_gd_src.sh`). Only torch and numpy are
needed then.
"""

import importlib
import os
import sys

import torch
import torch.nn as nn


def _import_gd():
    try:
        unet = importlib.import_module("guided_diffusion.unet")
        gnn = importlib.import_module("guided_diffusion.nn")
        return unet, gnn
    except ImportError as first:
        src = os.environ.get("GUIDED_DIFFUSION_SRC")
        if not src:
            raise ImportError(
                "guided_diffusion not importable and GUIDED_DIFFUSION_SRC is unset "
                f"(pip install guided-diffusion-sdk, or point it at a source copy): {first}"
            ) from first
        sys.path.insert(0, src)
        unet = importlib.import_module("guided_diffusion.unet")
        gnn = importlib.import_module("guided_diffusion.nn")
        return unet, gnn


gd_unet, gd_nn = _import_gd()

# The FULL DifFace FFHQ 512 prior, argument names as in DifFace's yaml.
FFHQ512 = dict(
    image_size=512,
    in_channels=3,
    model_channels=32,
    out_channels=6,
    num_res_blocks=[1, 2, 2, 2, 2, 3, 4],
    attention_resolutions=[32, 16, 8],
    dropout=0.0,
    channel_mult=[1, 2, 4, 8, 8, 16, 16],
    num_heads=1,
    num_head_channels=64,
    use_scale_shift_norm=True,
    resblock_updown=False,
    use_new_attention_order=False,
)


class DifFaceUNet(nn.Module):
    """UNet with per-level res-block counts and pixel attention resolutions.

    `num_heads_upsample`: DifFace's decoder attention passes only
    num_head_channels, so with num_head_channels == -1 its decoder attention
    falls back to ONE head whatever num_heads is. None reproduces that; the SDK's
    own behaviour (num_heads everywhere) is num_heads_upsample=num_heads. Both
    agree whenever num_head_channels > 0, as in the FFHQ 512 model.
    """

    def __init__(
        self,
        image_size,
        in_channels,
        model_channels,
        out_channels,
        num_res_blocks,
        attention_resolutions,
        dropout=0.0,
        channel_mult=(1, 2, 4, 8),
        conv_resample=True,
        num_heads=1,
        num_head_channels=-1,
        num_heads_upsample=None,
        use_scale_shift_norm=False,
        resblock_updown=False,
        use_new_attention_order=False,
    ):
        super().__init__()
        levels = len(channel_mult)
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * levels
        if len(num_res_blocks) != levels:
            raise ValueError(
                f"num_res_blocks has {len(num_res_blocks)} entries, channel_mult {levels}"
            )
        self.model_channels = model_channels
        self.num_res_blocks = list(num_res_blocks)
        heads_up = 1 if num_heads_upsample is None else num_heads_upsample
        emb_dim = model_channels * 4

        def resblock(ch_in, ch_out, **kw):
            return gd_unet.ResBlock(
                ch_in,
                emb_dim,
                dropout,
                out_channels=ch_out,
                dims=2,
                use_scale_shift_norm=use_scale_shift_norm,
                **kw,
            )

        def attention(ch, heads):
            return gd_unet.AttentionBlock(
                ch,
                num_heads=heads,
                num_head_channels=num_head_channels,
                use_new_attention_order=use_new_attention_order,
            )

        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        ch = int(channel_mult[0] * model_channels)
        first_ch = ch
        self.input_blocks = nn.ModuleList(
            [gd_unet.TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        size = image_size  # feature size in pixels at the current level
        for level, mult in enumerate(channel_mult):
            width = int(mult * model_channels)
            for _ in range(self.num_res_blocks[level]):
                layers = [resblock(ch, width)]
                ch = width
                if size in attention_resolutions:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(gd_unet.TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != levels - 1:
                down = (
                    resblock(ch, ch, down=True)
                    if resblock_updown
                    else gd_unet.Downsample(ch, conv_resample, dims=2, out_channels=ch)
                )
                self.input_blocks.append(gd_unet.TimestepEmbedSequential(down))
                skip_chans.append(ch)
                size //= 2

        self.middle_block = gd_unet.TimestepEmbedSequential(
            resblock(ch, ch), attention(ch, num_heads), resblock(ch, ch)
        )

        self.output_blocks = nn.ModuleList([])
        for level, mult in reversed(list(enumerate(channel_mult))):
            width = int(mult * model_channels)
            for i in range(self.num_res_blocks[level] + 1):
                layers = [resblock(ch + skip_chans.pop(), width)]
                ch = width
                if size in attention_resolutions:
                    layers.append(attention(ch, heads_up))
                if level and i == self.num_res_blocks[level]:
                    layers.append(
                        resblock(ch, ch, up=True)
                        if resblock_updown
                        else gd_unet.Upsample(ch, conv_resample, dims=2, out_channels=ch)
                    )
                    size *= 2
                self.output_blocks.append(gd_unet.TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            gd_nn.normalization(ch), nn.SiLU(), nn.Conv2d(first_ch, out_channels, 3, padding=1)
        )

    def forward(self, x, timesteps):
        emb = self.time_embed(gd_nn.timestep_embedding(timesteps, self.model_channels))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def build_ffhq512(device=None):
    """The full FFHQ 512 prior with the SDK's default init (or on 'meta')."""
    if device is None:
        return DifFaceUNet(**FFHQ512)
    with torch.device(device):
        return DifFaceUNet(**FFHQ512)
