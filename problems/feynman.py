"""eqforge's own Feynman suite: equations from the Feynman Lectures on Physics, sampled on
physically realistic ranges.

Each entry names the equation as AI Feynman does (``I.12.2`` ...), declares its ground
truth as a sympy-parsable expression in the variable names, and samples every input
uniformly on a physically realistic range in the stated unit. The units are chosen so
values stay within a few orders of magnitude of 1 (charges in µC, velocities near light
speed in 10^8 m/s ...); physical constants appear as numbers in the ground truth, scaled
to those units. The out-of-domain split samples every input on an extended range
(by default the next half-width above the in-domain range).

These samplings are eqforge's, not the papers': AI Feynman samples most variables (and the
physical constants, as inputs) uniformly on [1, 5], SRSD log-uniformly in SI units with the
constants fixed. Those published samplings are separate suites (``feynman_suites``:
``aifeynman-<id>``, ``srsd-<id>``), so numbers can be compared with a paper's.

``library.py`` turns these into problems named ``feynman-<id>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Var:
    name: str
    unit: str
    description: str
    lo: float = 0.0
    hi: float = 1.0
    ood: tuple[float, float] | None = None  # default: (hi, hi + (hi - lo) / 2)

    @property
    def ood_range(self) -> tuple[float, float]:
        return self.ood if self.ood is not None else (self.hi, self.hi + (self.hi - self.lo) / 2)


@dataclass(frozen=True)
class Equation:
    id: str
    expr: str
    output: Var
    inputs: tuple[Var, ...]
    context: str  # the physical setting, for the prompt; never the formula

    @property
    def name(self) -> str:
        return f"feynman-{self.id}"

    @property
    def description(self) -> str:
        names = [v.description for v in self.inputs]
        given = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f", and {names[-1]}"
        return (f"{self.context} Find the mathematical function skeleton that represents "
                f"{self.output.description}, given data on {given}.")


PI = math.pi
C8 = 2.99792458  # speed of light in 1e8 m/s

EQUATIONS: tuple[Equation, ...] = (
    Equation(
        "I.6.2a", "exp(-theta**2/2)/sqrt(2*pi)",
        Var("f", "1", "the probability density"),
        (Var("theta", "1", "the standardised deviation from the mean", -3, 3, (3, 5)),),
        "A random quantity fluctuates around its mean; its deviation is measured in units of the "
        "standard deviation.",
    ),
    Equation(
        "I.6.2", "exp(-(theta/sigma)**2/2)/(sqrt(2*pi)*sigma)",
        Var("f", "1", "the probability density"),
        (Var("theta", "1", "the deviation from the mean", -3, 3, (3, 5)),
         Var("sigma", "1", "the standard deviation", 0.5, 2, (2, 3))),
        "A random quantity with zero mean fluctuates with a given spread.",
    ),
    Equation(
        "I.6.2b", "exp(-((theta - theta1)/sigma)**2/2)/(sqrt(2*pi)*sigma)",
        Var("f", "1", "the probability density"),
        (Var("theta", "1", "the value of the random quantity", -3, 3, (3, 6)),
         Var("theta1", "1", "the mean", -1, 1, (1, 1.5)),
         Var("sigma", "1", "the standard deviation", 0.5, 2, (2, 3))),
        "A random quantity fluctuates around a mean with a given spread.",
    ),
    Equation(
        "I.8.14", "sqrt((x2 - x1)**2 + (y2 - y1)**2)",
        Var("d", "m", "the distance between two points"),
        (Var("x1", "m", "the x coordinate of the first point", -10, 10, (10, 15)),
         Var("x2", "m", "the x coordinate of the second point", -10, 10, (10, 15)),
         Var("y1", "m", "the y coordinate of the first point", -10, 10, (10, 15)),
         Var("y2", "m", "the y coordinate of the second point", -10, 10, (10, 15))),
        "Two points lie in a flat plane.",
    ),
    Equation(
        "I.10.7", f"m0/sqrt(1 - (v/{C8})**2)",
        Var("m", "kg", "the relativistic mass of a moving body"),
        (Var("m0", "kg", "the rest mass", 1, 5, (5, 7)),
         Var("v", "1e8 m/s", "the speed of the body", 0.3, 2.4, (2.4, 2.9))),
        "A body moves at a speed comparable to the speed of light.",
    ),
    Equation(
        "I.11.19", "Fx*dx + Fy*dy + Fz*dz",
        Var("W", "J", "the work done by the force"),
        (Var("Fx", "N", "the x component of the force", -5, 5, (5, 10)),
         Var("Fy", "N", "the y component of the force", -5, 5, (5, 10)),
         Var("Fz", "N", "the z component of the force", -5, 5, (5, 10)),
         Var("dx", "m", "the x component of the displacement", -5, 5, (5, 10)),
         Var("dy", "m", "the y component of the displacement", -5, 5, (5, 10)),
         Var("dz", "m", "the z component of the displacement", -5, 5, (5, 10))),
        "A constant force acts on a body that moves along a straight line in space.",
    ),
    Equation(
        "I.12.1", "mu*Nn",
        Var("F", "N", "the friction force"),
        (Var("mu", "1", "the coefficient of friction", 0.1, 0.8, (0.8, 1.2)),
         Var("Nn", "N", "the normal force", 1, 100, (100, 150))),
        "A block slides over a rough horizontal surface.",
    ),
    Equation(
        "I.12.2", "8.9875517923e-3*q1*q2/r**2",
        Var("F", "N", "the electrostatic force between two point charges"),
        (Var("q1", "µC", "the first charge", 1, 10, (10, 15)),
         Var("q2", "µC", "the second charge", 1, 10, (10, 15)),
         Var("r", "m", "the distance between the charges", 0.1, 1, (1, 1.5))),
        "Two point charges are held at rest in vacuum.",
    ),
    Equation(
        "I.12.4", "8.9875517923*q/r**2",
        Var("Ef", "V/m", "the electric field strength of a point charge"),
        (Var("q", "nC", "the charge", 1, 10, (10, 15)),
         Var("r", "m", "the distance from the charge", 0.1, 1, (1, 1.5))),
        "A point charge sits at rest in vacuum.",
    ),
    Equation(
        "I.12.5", "q2*Ef",
        Var("F", "mN", "the electric force on a charge"),
        (Var("q2", "µC", "the charge", 1, 10, (10, 15)),
         Var("Ef", "kV/m", "the electric field strength", 1, 100, (100, 150))),
        "A small charged body sits in a uniform electric field.",
    ),
    Equation(
        "I.12.11", "1e-3*q*(Ef + B*v*sin(theta))",
        Var("F", "mN", "the Lorentz force on a moving charge"),
        (Var("q", "µC", "the charge", 1, 10, (10, 15)),
         Var("Ef", "V/m", "the electric field strength", 100, 1000, (1000, 1500)),
         Var("B", "T", "the magnetic flux density", 0.1, 1, (1, 1.5)),
         Var("v", "m/s", "the speed of the charge", 100, 1000, (1000, 1500)),
         Var("theta", "rad", "the angle between the velocity and the magnetic field", 0, PI / 2,
             (PI / 2, 3 * PI / 4))),
        "A charged particle moves through a region with both an electric and a magnetic field; "
        "the electric field is along the magnetic force direction.",
    ),
    Equation(
        "I.13.4", "0.5*m*(v**2 + u**2 + w**2)",
        Var("K", "J", "the kinetic energy"),
        (Var("m", "kg", "the mass", 1, 5, (5, 7)),
         Var("v", "m/s", "the x component of the velocity", -10, 10, (10, 15)),
         Var("u", "m/s", "the y component of the velocity", -10, 10, (10, 15)),
         Var("w", "m/s", "the z component of the velocity", -10, 10, (10, 15))),
        "A point mass moves freely in space.",
    ),
    Equation(
        "I.13.12", "6.6743e-2*m1*m2*(1/r2 - 1/r1)",
        Var("U", "GJ", "the work done by gravity"),
        (Var("m1", "1e24 kg", "the mass of the planet", 1, 10, (10, 15)),
         Var("m2", "kg", "the mass of the probe", 100, 1000, (1000, 1500)),
         Var("r1", "1e6 m", "the initial distance from the planet's centre", 6.4, 10, (10, 12)),
         Var("r2", "1e6 m", "the final distance from the planet's centre", 10, 40, (40, 60))),
        "A space probe climbs away from a planet: it moves from an initial distance to a larger final "
        "distance from the planet's centre, against the planet's gravity.",
    ),
    Equation(
        "I.14.3", "9.80665*m*z",
        Var("U", "J", "the gravitational potential energy"),
        (Var("m", "kg", "the mass", 0.1, 10, (10, 15)),
         Var("z", "m", "the height above the ground", 0, 100, (100, 150))),
        "A body is lifted near the surface of the Earth.",
    ),
    Equation(
        "I.14.4", "0.5*k_spring*x**2",
        Var("U", "J", "the elastic potential energy"),
        (Var("k_spring", "N/m", "the spring constant", 10, 1000, (1000, 1500)),
         Var("x", "m", "the extension of the spring", -0.5, 0.5, (0.5, 0.75))),
        "An ideal spring is stretched or compressed from its rest length.",
    ),
    Equation(
        "I.15.3x", f"(x - u*t)/sqrt(1 - (u/{C8})**2)",
        Var("x1", "1e8 m", "the position in the moving frame"),
        (Var("x", "1e8 m", "the position in the rest frame", 1, 10, (10, 15)),
         Var("u", "1e8 m/s", "the speed of the moving frame", 0.3, 2.4, (2.4, 2.9)),
         Var("t", "s", "the time in the rest frame", 0, 2, (2, 3))),
        "An event is observed from a rest frame and from a frame moving along x at a speed "
        "comparable to the speed of light.",
    ),
    Equation(
        "I.16.6", f"(u + v)/(1 + u*v/{C8}**2)",
        Var("w", "1e8 m/s", "the combined velocity"),
        (Var("u", "1e8 m/s", "the velocity of the moving frame", 0.3, 2.4, (2.4, 2.95)),
         Var("v", "1e8 m/s", "the velocity of the body in the moving frame", 0.3, 2.4, (2.4, 2.95))),
        "A body moves inside a frame that itself moves at a speed comparable to light, both "
        "along the same line.",
    ),
    Equation(
        "I.18.4", "(m1*r1 + m2*r2)/(m1 + m2)",
        Var("r", "m", "the position of the centre of mass"),
        (Var("m1", "kg", "the first mass", 1, 10, (10, 15)),
         Var("m2", "kg", "the second mass", 1, 10, (10, 15)),
         Var("r1", "m", "the position of the first mass", -5, 5, (5, 10)),
         Var("r2", "m", "the position of the second mass", -5, 5, (5, 10))),
        "Two point masses lie on a line.",
    ),
    Equation(
        "I.24.6", "0.25*m*(omega**2 + omega0**2)*x**2",
        Var("Em", "J", "the time-averaged energy of the oscillator"),
        (Var("m", "kg", "the mass", 0.1, 2, (2, 3)),
         Var("omega", "rad/s", "the driving angular frequency", 1, 10, (10, 15)),
         Var("omega0", "rad/s", "the natural angular frequency", 1, 10, (10, 15)),
         Var("x", "m", "the amplitude", 0.01, 0.5, (0.5, 0.75))),
        "A mass on a spring is driven by a periodic force.",
    ),
    Equation(
        "I.25.13", "q/Cap",
        Var("Ve", "V", "the voltage across the capacitor"),
        (Var("q", "µC", "the stored charge", 1, 100, (100, 150)),
         Var("Cap", "µF", "the capacitance", 0.1, 10, (10, 15))),
        "A capacitor holds a charge.",
    ),
    Equation(
        "I.26.2", "asin(n*sin(theta2))",
        Var("theta1", "rad", "the angle of refraction"),
        (Var("n", "1", "the relative refractive index", 1, 1.5, (1.5, 1.55)),
         Var("theta2", "rad", "the angle of incidence", 0.05, 0.6, (0.6, 0.68))),
        "Light crosses the flat boundary between two transparent media.",
    ),
    Equation(
        "I.27.6", "1/(1/d1 + n/d2)",
        Var("foc", "m", "the focal length"),
        (Var("d1", "m", "the first distance", 0.1, 1, (1, 1.5)),
         Var("n", "1", "the refractive index", 1, 2, (2, 2.5)),
         Var("d2", "m", "the second distance", 0.1, 1, (1, 1.5))),
        "A thin lens system forms an image.",
    ),
    Equation(
        "I.29.4", "3.3356409520*omega",
        Var("k", "rad/m", "the wavenumber"),
        (Var("omega", "1e9 rad/s", "the angular frequency", 1, 100, (100, 150)),),
        "An electromagnetic wave travels through vacuum.",
    ),
    Equation(
        "I.30.3", "Int0*sin(n*theta/2)**2/sin(theta/2)**2",
        Var("Int", "W/m^2", "the intensity of the diffraction pattern"),
        (Var("Int0", "W/m^2", "the intensity from a single slit", 1, 5, (5, 7)),
         Var("n", "1", "the number of slits", 2, 6, (6, 8)),
         Var("theta", "rad", "the phase difference between neighbouring slits", 0.1, 1.5, (1.5, 2.2))),
        "Light passes through a grating of equally spaced, equally illuminated slits.",
    ),
    Equation(
        "I.34.8", "0.1602176634*q*v*B/p",
        Var("omega", "1e9 rad/s", "the angular frequency of the circular motion"),
        (Var("q", "e", "the charge of the particle", 1, 5, (5, 7)),
         Var("v", "1e6 m/s", "the speed of the particle", 1, 10, (10, 15)),
         Var("B", "T", "the magnetic flux density", 0.1, 2, (2, 3)),
         Var("p", "1e-21 kg m/s", "the momentum of the particle", 1, 10, (10, 15))),
        "A charged particle circles in a uniform magnetic field.",
    ),
    Equation(
        "I.34.14", f"(1 + v/{C8})/sqrt(1 - (v/{C8})**2)*omega0",
        Var("omega", "1e15 rad/s", "the observed angular frequency"),
        (Var("v", "1e8 m/s", "the speed of the source towards the observer", 0.1, 2, (2, 2.5)),
         Var("omega0", "1e15 rad/s", "the emitted angular frequency", 1, 5, (5, 7))),
        "A light source moves towards an observer at a speed comparable to the speed of light.",
    ),
    Equation(
        "I.37.4", "I1 + I2 + 2*sqrt(I1*I2)*cos(delta)",
        Var("Int", "W/m^2", "the resulting intensity"),
        (Var("I1", "W/m^2", "the intensity of the first wave", 1, 5, (5, 8)),
         Var("I2", "W/m^2", "the intensity of the second wave", 1, 5, (5, 8)),
         Var("delta", "rad", "the phase difference", 0, PI, (PI, 1.5 * PI))),
        "Two coherent light waves overlap.",
    ),
    Equation(
        "I.39.10", "1.5*pr*V",
        Var("Eint", "kJ", "the internal energy of the gas"),
        (Var("pr", "kPa", "the pressure", 50, 200, (200, 300)),
         Var("V", "m^3", "the volume", 0.001, 0.1, (0.1, 0.15))),
        "A monatomic ideal gas is held in a container.",
    ),
    Equation(
        "I.39.22", "8.314462618e-3*n*T/V",
        Var("pr", "kPa", "the pressure"),
        (Var("n", "mol", "the amount of gas", 0.1, 10, (10, 15)),
         Var("T", "K", "the temperature", 200, 400, (400, 500)),
         Var("V", "m^3", "the volume", 0.01, 0.1, (0.1, 0.15))),
        "An ideal gas is held in a closed container.",
    ),
    Equation(
        "I.40.1", "n0*exp(-M*9.80665*x/(8.314462618*T))",
        Var("n", "1e25 m^-3", "the number density of gas molecules"),
        (Var("n0", "1e25 m^-3", "the number density at ground level", 1, 3, (3, 4)),
         Var("M", "kg/mol", "the molar mass of the gas", 0.002, 0.044, (0.044, 0.07)),
         Var("x", "m", "the altitude", 0, 5000, (5000, 10000)),
         Var("T", "K", "the temperature", 200, 320, (320, 400))),
        "An isothermal column of gas rests in the Earth's gravitational field.",
    ),
    Equation(
        "I.44.4", "8.314462618e-3*n*T*log(V2/V1)",
        Var("Ework", "kJ", "the work done by the gas"),
        (Var("n", "mol", "the amount of gas", 0.1, 2, (2, 3)),
         Var("T", "K", "the temperature", 250, 400, (400, 500)),
         Var("V1", "m^3", "the initial volume", 0.01, 0.05, (0.05, 0.07)),
         Var("V2", "m^3", "the final volume", 0.05, 0.2, (0.2, 0.3))),
        "An ideal gas expands slowly at constant temperature.",
    ),
    Equation(
        "I.47.23", "sqrt(1000*heat_ratio*pr/rho)",
        Var("c", "m/s", "the speed of sound"),
        (Var("heat_ratio", "1", "the adiabatic index (ratio of specific heats)", 1.1, 1.67, (1.67, 1.8)),
         Var("pr", "kPa", "the pressure", 50, 200, (200, 300)),
         Var("rho", "kg/m^3", "the density", 0.5, 2, (2, 3))),
        "Sound travels through an ideal gas.",
    ),
    Equation(
        "I.50.26", "x1*(cos(omega*t) + alpha*cos(omega*t)**2)",
        Var("x", "m", "the displacement"),
        (Var("x1", "m", "the amplitude", 0.1, 1, (1, 1.5)),
         Var("omega", "rad/s", "the angular frequency", 1, 5, (5, 7)),
         Var("t", "s", "the time", 0, 5, (5, 10)),
         Var("alpha", "1", "the strength of the nonlinearity", 0, 0.5, (0.5, 0.8))),
        "An oscillator with a weak nonlinear (anharmonic) response is driven periodically.",
    ),
    Equation(
        "II.2.42", "kappa*(T2 - T1)*A/d",
        Var("Pwr", "W", "the rate of heat flow"),
        (Var("kappa", "W/(m K)", "the thermal conductivity", 0.1, 2, (2, 3)),
         Var("T2", "K", "the temperature of the hot face", 333, 373, (373, 423)),
         Var("T1", "K", "the temperature of the cold face", 273, 313, (313, 333)),
         Var("A", "m^2", "the area", 0.1, 2, (2, 3)),
         Var("d", "m", "the thickness", 0.01, 0.1, (0.1, 0.15))),
        "Heat is conducted through a flat slab whose two faces are held at fixed temperatures.",
    ),
    Equation(
        "II.3.24", "Pwr/(4*pi*r**2)",
        Var("h", "W/m^2", "the flux of radiated energy"),
        (Var("Pwr", "W", "the radiated power", 10, 1000, (1000, 1500)),
         Var("r", "m", "the distance from the source", 1, 10, (10, 15))),
        "A small source radiates evenly in all directions.",
    ),
    Equation(
        "II.11.3", "1e-3*q*Ef/(m*(omega0**2 - omega**2))",
        Var("x", "m", "the amplitude of the displacement"),
        (Var("q", "µC", "the charge", 1, 10, (10, 15)),
         Var("Ef", "kV/m", "the amplitude of the driving electric field", 1, 100, (100, 150)),
         Var("m", "kg", "the mass", 0.1, 1, (1, 1.5)),
         Var("omega0", "rad/s", "the natural angular frequency", 5, 10, (10, 15)),
         Var("omega", "rad/s", "the driving angular frequency", 0.1, 4, (4, 4.5))),
        "A charged mass bound by a spring is driven by an oscillating electric field, below resonance.",
    ),
    Equation(
        "II.15.4", "-mu*B*cos(theta)",
        Var("Emag", "J", "the energy of the magnetic dipole"),
        (Var("mu", "A m^2", "the magnetic moment", 0.1, 5, (5, 7.5)),
         Var("B", "T", "the magnetic flux density", 0.1, 2, (2, 3)),
         Var("theta", "rad", "the angle between the moment and the field", 0, PI, (PI, 1.5 * PI))),
        "A magnetic dipole sits in a uniform magnetic field.",
    ),
    Equation(
        "II.27.18", "8.8541878128e-3*Ef**2",
        Var("u", "mJ/m^3", "the electromagnetic energy density of the wave (electric and magnetic parts)"),
        (Var("Ef", "kV/m", "the electric field strength of the wave", 1, 100, (100, 150)),),
        "A plane electromagnetic wave travels through vacuum; its electric field strength is measured "
        "at a point.",
    ),
    Equation(
        "II.34.2a", "q*v/(2*pi*r)",
        Var("Icur", "µA", "the electric current"),
        (Var("q", "µC", "the charge", 1, 10, (10, 15)),
         Var("v", "m/s", "the speed", 1, 100, (100, 150)),
         Var("r", "m", "the radius of the orbit", 0.1, 1, (1, 1.5))),
        "A charge moves at constant speed on a circular orbit.",
    ),
    Equation(
        "II.35.21", "n*mu*tanh(0.671713816*mu*B/T)",
        Var("Mag", "1e28 µB/m^3", "the magnetisation"),
        (Var("n", "1e28 m^-3", "the number density of magnetic atoms", 1, 5, (5, 7)),
         Var("mu", "µB", "the magnetic moment of one atom", 1, 3, (3, 4)),
         Var("B", "T", "the magnetic flux density", 0.1, 5, (5, 7.5)),
         Var("T", "K", "the temperature", 1, 300, (300, 450))),
        "A paramagnet of two-state magnetic moments is in thermal equilibrium in a magnetic field.",
    ),
    Equation(
        "II.38.3", "Y*A*x/d",
        Var("F", "N", "the tension force"),
        (Var("Y", "GPa", "the Young modulus", 50, 200, (200, 300)),
         Var("A", "mm^2", "the cross-sectional area", 1, 10, (10, 15)),
         Var("x", "mm", "the elongation", 0.01, 0.1, (0.1, 0.15)),
         Var("d", "m", "the length of the rod", 0.5, 2, (2, 3))),
        "A rod is stretched elastically.",
    ),
    Equation(
        "III.4.33", "6.582119569*omega/(exp(76.38232*omega/T) - 1)",
        Var("Eav", "meV", "the mean energy of the oscillator mode"),
        (Var("omega", "1e13 rad/s", "the angular frequency", 1, 10, (10, 15)),
         Var("T", "K", "the temperature", 100, 1000, (1000, 1500))),
        "A quantum harmonic oscillator mode is in thermal equilibrium with a heat bath.",
    ),
    Equation(
        "III.10.19", "57.883818060*mu*sqrt(Bx**2 + By**2 + Bz**2)",
        Var("Emag", "µeV", "the magnetic energy"),
        (Var("mu", "µB", "the magnetic moment", 1, 3, (3, 4)),
         Var("Bx", "T", "the x component of the magnetic field", -2, 2, (2, 4)),
         Var("By", "T", "the y component of the magnetic field", -2, 2, (2, 4)),
         Var("Bz", "T", "the z component of the magnetic field", -2, 2, (2, 4))),
        "A spin with a magnetic moment is aligned with an external magnetic field.",
    ),
)

BY_NAME: dict[str, Equation] = {eq.name: eq for eq in EQUATIONS}
