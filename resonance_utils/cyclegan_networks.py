"""The CycleGAN's networks: the official ResNet generator and PatchGAN discriminator, and the model pair.

Written from scratch with the module layout (and so the state-dict keys) of the official
junyanz/pytorch-CycleGAN-and-pix2pix `networks.py` with instance norm, so its `latest_net_G_A.pth` files load
(`resonance_utils.cyclegan_checkpoints`). Names follow the domains: G_AB maps domain A to B, G_BA maps B to A,
and D_A judges images of domain A (the official code names the discriminator after the generator that feeds
it, so its D_A judges domain B). Training and the iterated cycle: `resonance_utils.cyclegan`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ResnetBlock", "ResnetGenerator", "NLayerDiscriminator", "patch_size", "init_weights", "CycleGAN",
           "make_cyclegan"]


# ------------------------------------------------------------------------------------------------ the networks
def _norm(channels: int) -> nn.Module:
    # the official 'instance' norm: no affine parameters, no running statistics (so no state-dict entries)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """x + conv_block(x); conv_block = pad, conv3, norm, ReLU, [dropout], pad, conv3, norm (official indices)."""

    def __init__(self, dim: int, use_dropout: bool = False):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The official ResNet generator: c7s1-ngf, two stride-2 convs, n_blocks residual blocks at 1/4 resolution,
    two transposed convs, c7s1-output_nc, tanh. Height and width must be multiples of 4 (28 -> 14 -> 7 -> 28).

    Key layout (ngf and n_blocks only change widths and how many blocks): model.1 first conv, model.4 and
    model.7 downsampling, model.10 .. model.{9+n_blocks} blocks, then two ConvTranspose2d and the last conv.
    """

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9,
                 use_dropout: bool = False):
        super().__init__()
        if min(input_nc, output_nc, ngf) < 1 or n_blocks < 0:
            raise ValueError(f"ResnetGenerator needs input_nc, output_nc, ngf >= 1 and n_blocks >= 0, got "
                             f"{input_nc}, {output_nc}, {ngf}, {n_blocks}")
        self.input_nc, self.output_nc, self.ngf, self.n_blocks = input_nc, output_nc, ngf, n_blocks
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for i in range(2):  # downsampling: ngf -> 2 ngf -> 4 ngf
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=True), _norm(2 * c), nn.ReLU(True)]
        layers += [ResnetBlock(4 * ngf, use_dropout) for _ in range(n_blocks)]
        for i in range(2):  # upsampling: 4 ngf -> 2 ngf -> ngf
            c = ngf * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                       _norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The official PatchGAN (70x70 receptive field for n_layers=3): kernel 4, padding 1, LeakyReLU 0.2, n_layers
    stride-2 convs (the first without norm), one stride-1 conv with norm, a stride-1 conv to one channel."""

    def __init__(self, input_nc: int = 1, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if min(input_nc, ndf, n_layers) < 1:
            raise ValueError(f"NLayerDiscriminator needs input_nc, ndf, n_layers >= 1, got {input_nc}, {ndf}, "
                             f"{n_layers}")
        self.input_nc, self.ndf, self.n_layers = input_nc, ndf, n_layers
        layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last widening conv keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=True), _norm(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def patch_size(size: int, n_layers: int) -> int:
    """The side of the discriminator's patch map for an input side `size` (n_layers stride-2, two stride-1)."""
    for _ in range(n_layers):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The official init_weights('normal'): conv weights from N(0, gain), biases zero."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net

# ---------------------------------------------------------------------------------------------- the model pair
class CycleGAN(nn.Module):
    """Two generators (G_AB: A -> B, G_BA: B -> A) and two PatchGANs (D_A judges domain A, D_B domain B)."""

    def __init__(self, *, channels: int = 1, ngf: int = 16, n_blocks: int = 3, ndf: int = 16, n_layers: int = 2):
        super().__init__()
        self.config = dict(channels=int(channels), ngf=int(ngf), n_blocks=int(n_blocks), ndf=int(ndf),
                           n_layers=int(n_layers))
        self.G_AB = ResnetGenerator(channels, channels, ngf, n_blocks)
        self.G_BA = ResnetGenerator(channels, channels, ngf, n_blocks)
        self.D_A = NLayerDiscriminator(channels, ndf, n_layers)
        self.D_B = NLayerDiscriminator(channels, ndf, n_layers)

    def forward(self, x):
        """The cycle A -> B -> A."""
        return self.G_BA(self.G_AB(x))


def make_cyclegan(*, channels: int = 1, ngf: int = 16, n_blocks: int = 3, ndf: int = 16, n_layers: int = 2,
                  seed: int = 0) -> CycleGAN:
    """A freshly initialised CycleGAN (official 'normal' init, std 0.02), the same for the same seed.

    The defaults are small (about 0.3M parameters per generator) for 28x28 MNIST on a CPU; the paper's
    resnet_9blocks is ngf=64, n_blocks=9, ndf=64, n_layers=3.
    """
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        return init_weights(CycleGAN(channels=channels, ngf=ngf, n_blocks=n_blocks, ndf=ndf, n_layers=n_layers))
