"""One ``handle_<name>`` per request message: simulated state in, reply protobuf out.

:data:`HANDLERS` maps request tags to handlers. The reply tag is always
``registry.reply_tag(request_tag)``; sequence numbers and encryption are the
server's business.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, Final

from google.protobuf.message import Message

from hoymiles_bridge.protocol.crc import crc16_modbus
from hoymiles_bridge.protocol.pb import (
    appinfo_pb2,
    autosearch_pb2,
    command_pb2,
    config_pb2,
    devconfig_pb2,
    energy_storage_pb2,
    gateway_pb2,
    gridselftest_pb2,
    heartbeat_pb2,
    history_pb2,
    network_pb2,
    realdata_pb2,
    warn_pb2,
)
from hoymiles_bridge.simulator.physics import local_midnight, utc_offset
from hoymiles_bridge.simulator.state import (
    GRID_PROFILE_CRC,
    DataSnapshot,
    InverterReading,
    SimulatedDtu,
)

#: Inverters per RealDataNew page.
INVERTERS_PER_PAGE: Final = 4
#: Power-history samples per page and their spacing.
HIST_SAMPLES_PER_PAGE: Final = 40
HIST_STEP: Final = 300
#: Feature flag bit that tells clients the DTU encrypts (protocol.md 2.6).
DFS_ENCRYPTION_BIT: Final = 1 << 25
#: dfs of real encrypting DTUs (ha-hoymiles-wifi PR #227). Plaintext firmware
#: sends no dfs at all (0); hoymiles-wifi's is-encrypted relies on that.
DFS_ENCRYPTING: Final = 0x4E0000C0


def _dfs(dtu: SimulatedDtu) -> int:
    return DFS_ENCRYPTING if dtu.encrypt else 0


_DEVICE_KIND_MICRO: Final = 3


def _pages(count: int, per_page: int) -> int:
    return max(1, math.ceil(count / per_page))


# --- app info and heartbeat ----------------------------------------------------


def handle_app_info(
    dtu: SimulatedDtu, request: appinfo_pb2.AppInfoToDtu
) -> appinfo_pb2.AppInfoFromDtu:
    now = int(dtu.now())
    dfs = _dfs(dtu)
    info = appinfo_pb2.AppDtuInfo(
        device_kind=1,
        dtu_sw=dtu.spec.firmware,
        dtu_hw=dtu.spec.hardware,
        dtu_step_time=15,
        dtu_rf_hw=256,
        dtu_rf_sw=4097,
        access_model=1,
        communication_time=now,
        signal_strength=dtu.signal_strength,
        wifi_vsn="V1.0.16",
        dtu_rule_id=1,
        sub1g_fqband=1,
        dtu_sw_btime=int(dtu.boot_time),
        dfs=dfs,
        enc_rand=dtu.enc_rand,
    )
    pv_info = [
        appinfo_pb2.AppPvInfo(
            device_kind=_DEVICE_KIND_MICRO,
            pv_sn=inv.serial,
            pv_usfw=10000,
            pv_sw=10012,
            pv_hw_pn=1537,
            pv_hw=256,
            pv_gpf_code=2560,
            pv_gpf=8193,
            pv_rf_hw=256,
            pv_rf_sw=4097,
            mi_rule_id=1,
        )
        for inv in dtu.inverters
    ]
    return appinfo_pb2.AppInfoFromDtu(
        dtu_sn=dtu.serial,
        time=now,
        device_nub=len(dtu.inverters),
        pv_nub=sum(inv.spec.ports for inv in dtu.inverters),
        package_nub=1,
        package_now=0,
        dtu_info=info,
        pv_info=pv_info,
        app_features=[
            appinfo_pb2.AppFeature(key=8, value=f"1,A:{dtu.limit_power_mypower},B:0,C:0\r")
        ],
    )


def handle_heartbeat(
    dtu: SimulatedDtu, request: heartbeat_pb2.HeartbeatToDtu
) -> heartbeat_pb2.HeartbeatFromDtu:
    return heartbeat(dtu)


def heartbeat(dtu: SimulatedDtu) -> heartbeat_pb2.HeartbeatFromDtu:
    now = dtu.now()
    return heartbeat_pb2.HeartbeatFromDtu(
        offset=utc_offset(now), time=int(now), csq=dtu.signal_strength, dtu_sn=dtu.serial
    )


# --- real data -----------------------------------------------------------------


def _sgs(reading: InverterReading) -> realdata_pb2.SgsData:
    if not reading.link:
        return realdata_pb2.SgsData(sn=reading.serial)
    voltage = reading.ac_voltage
    return realdata_pb2.SgsData(
        sn=reading.serial,
        ver=1,
        v=round(voltage * 10),
        freq=round(reading.frequency * 100),
        p=round(reading.ac_power * 10),
        q=round(reading.reactive_power * 10),
        i=round(reading.ac_power / voltage * 100) if voltage > 0 else 0,
        pf=round(reading.power_factor * 1000),
        temp=round(reading.temperature * 10),
        wnum=reading.wnum,
        crc=GRID_PROFILE_CRC,
        link=1,
        p_lim=reading.limit_permille,
        mi_signal=0x000F000E,
    )


def _tgs(reading: InverterReading) -> realdata_pb2.TgsData:
    if not reading.link:
        return realdata_pb2.TgsData(sn=reading.serial)
    phase_v = reading.ac_voltage
    line_v = phase_v * math.sqrt(3)
    amps = round(reading.ac_power / 3 / phase_v * 100) if phase_v > 0 else 0
    return realdata_pb2.TgsData(
        sn=reading.serial,
        ver=1,
        v_a=round(phase_v * 10),
        v_b=round((phase_v + 0.4) * 10),
        v_c=round((phase_v - 0.3) * 10),
        v_ab=round(line_v * 10),
        v_bc=round((line_v + 0.2) * 10),
        v_ca=round((line_v - 0.2) * 10),
        freq=round(reading.frequency * 100),
        p=round(reading.ac_power * 10),
        q=round(reading.reactive_power * 10),
        i_a=amps,
        i_b=amps,
        i_c=amps,
        pf=round(reading.power_factor * 1000),
        temp=round(reading.temperature * 10),
        wnum=reading.wnum,
        crc=GRID_PROFILE_CRC,
        link=1,
        mi_signal=0x000F000E,
    )


def _pv(reading: InverterReading) -> list[realdata_pb2.PvData]:
    out = []
    for port in reading.ports:
        if reading.link:
            out.append(
                realdata_pb2.PvData(
                    sn=reading.serial,
                    pi=port.port,
                    v=round(port.voltage * 10),
                    i=round(port.current * 100),
                    p=round(port.power * 10),
                    et=port.energy_total,
                    ed=port.energy_daily,
                    code=0x03000000,
                )
            )
        else:
            out.append(
                realdata_pb2.PvData(
                    sn=reading.serial, pi=port.port, et=port.energy_total, ed=port.energy_daily
                )
            )
    return out


def real_data_page(
    dtu: SimulatedDtu, snapshot: DataSnapshot, page: int
) -> realdata_pb2.RealDataNewFromDtu:
    """Page ``page`` (0-based, clamped) of a snapshot as RealDataNew."""
    pages = _pages(len(snapshot.inverters), INVERTERS_PER_PAGE)
    page = min(max(page, 0), pages - 1)
    chosen = snapshot.inverters[page * INVERTERS_PER_PAGE : (page + 1) * INVERTERS_PER_PAGE]
    return realdata_pb2.RealDataNewFromDtu(
        sn=dtu.serial,
        time=snapshot.time,
        ap=pages,
        cp=page,
        ver=1,
        sgs_datas=[_sgs(r) for r in chosen if r.phases == 1],
        tgs_datas=[_tgs(r) for r in chosen if r.phases == 3],
        pv_datas=[pv for r in chosen for pv in _pv(r)],
        dtu_p=round(snapshot.total_power * 10),
        dtu_ed=snapshot.total_daily_energy,
    )


def handle_real_data_new(
    dtu: SimulatedDtu, request: realdata_pb2.RealDataNewToDtu
) -> realdata_pb2.RealDataNewFromDtu:
    return real_data_page(dtu, dtu.snapshot(), request.cp)


def handle_real_data(
    dtu: SimulatedDtu, request: realdata_pb2.RealDataToDtu
) -> realdata_pb2.RealDataNewFromDtu:
    """Legacy 0xA303: modern DTUs answer with the RealDataNew layout."""
    return real_data_page(dtu, dtu.snapshot(), request.cp)


# --- configuration and network -------------------------------------------------


def handle_get_config(
    dtu: SimulatedDtu, request: config_pb2.GetConfigToDtu
) -> config_pb2.GetConfigFromDtu:
    now = dtu.now()
    cfg = dtu.config
    ip, mask, gw, dns, mac = cfg.ip, cfg.netmask, cfg.gateway, cfg.dns, cfg.mac
    return config_pb2.GetConfigFromDtu(
        offset=utc_offset(now),
        time=int(now),
        limit_power_mypower=dtu.limit_power_mypower,
        netmode_select=1,
        channel_select=1,
        server_send_time=cfg.server_send_time,
        wifi_rssi=dtu.signal_strength - 12,
        serverport=cfg.server_port,
        apn_set="CMNET",
        wifi_ssid=cfg.wifi_ssid,
        wifi_passward=cfg.wifi_password,
        server_domain_name=cfg.server_domain_name,
        dtu_sn=dtu.serial,
        access_model=1,
        mac_0=mac[0],
        mac_1=mac[1],
        mac_2=mac[2],
        mac_3=mac[3],
        mac_4=mac[4],
        mac_5=mac[5],
        dhcp_switch=1 if cfg.dhcp else 0,
        ip_addr_0=ip[0],
        ip_addr_1=ip[1],
        ip_addr_2=ip[2],
        ip_addr_3=ip[3],
        subnet_mask_0=mask[0],
        subnet_mask_1=mask[1],
        subnet_mask_2=mask[2],
        subnet_mask_3=mask[3],
        default_gateway_0=gw[0],
        default_gateway_1=gw[1],
        default_gateway_2=gw[2],
        default_gateway_3=gw[3],
        apn_name="NONE",
        sub1g_work_channel=9,
        cable_dns_0=dns[0],
        cable_dns_1=dns[1],
        cable_dns_2=dns[2],
        cable_dns_3=dns[3],
        wifi_ip_addr_0=ip[0],
        wifi_ip_addr_1=ip[1],
        wifi_ip_addr_2=ip[2],
        wifi_ip_addr_3=ip[3],
        wifi_mac_0=mac[0],
        wifi_mac_1=mac[1],
        wifi_mac_2=mac[2],
        wifi_mac_3=mac[3],
        wifi_mac_4=mac[4],
        wifi_mac_5=(mac[5] + 1) & 0xFF,
        dtu_ap_ssid=f"{dtu.spec.model}-{dtu.serial}",
        dtu_ap_pass=cfg.ap_password,
    )


def handle_set_config(
    dtu: SimulatedDtu, request: config_pb2.SetConfigToDtu
) -> config_pb2.SetConfigFromDtu:
    cfg = dtu.config
    if request.wifi_ssid:
        cfg.wifi_ssid = request.wifi_ssid
    if request.wifi_passward:
        cfg.wifi_password = request.wifi_passward
    if request.server_domain_name:
        cfg.server_domain_name = request.server_domain_name
    if request.serverport:
        cfg.server_port = request.serverport
    if request.server_send_time:
        cfg.server_send_time = request.server_send_time
    if request.dtu_ap_pass:
        cfg.ap_password = request.dtu_ap_pass
    now = dtu.now()
    return config_pb2.SetConfigFromDtu(offset=utc_offset(now), time=int(now), err_code=0)


def handle_network_info(
    dtu: SimulatedDtu, request: network_pb2.NetworkInfoToDtu
) -> network_pb2.NetworkInfoFromDtu:
    now = dtu.now()
    return network_pb2.NetworkInfoFromDtu(
        dtu_sn=dtu.serial,
        time=int(now),
        net_set_mod=1,
        net_set_state=1,
        net_work_mod=1,
        net_work_time=int(now - dtu.boot_time),
        csq=dtu.signal_strength,
        net_work_state=1,
        ap_set_state=0,
    )


# --- commands and warnings ---------------------------------------------------------


def handle_command(
    dtu: SimulatedDtu, request: command_pb2.CommandToDtu
) -> command_pb2.CommandFromDtu:
    err = dtu.execute(request.action, request.data, list(request.mi_to_sn), request.tid)
    return command_pb2.CommandFromDtu(
        dtu_sn=dtu.serial,
        time=int(dtu.now()),
        action=request.action,
        package_now=0,
        err_code=err,
        tid=request.tid,
    )


def handle_command_status(
    dtu: SimulatedDtu, request: command_pb2.CommandStatusToDtu
) -> command_pb2.CommandStatusFromDtu:
    record, running = dtu.command_status(request.tid)
    reply = command_pb2.CommandStatusFromDtu(
        dtu_sn=dtu.serial,
        time=int(dtu.now()),
        action=request.action,
        package_nub=1,
        tid=request.tid,
    )
    if record is None:
        return reply
    reply.action = record.action
    reply.tid = record.tid
    if running:
        reply.mi_m_operating_status.extend(
            command_pb2.MiOperatingStatus(mi_sn=sn, progress_rate=50) for sn in record.targets
        )
    else:
        reply.mi_sns_sucs.extend(record.targets)
    reply.mi_sns_failds.extend(record.failed)
    return reply


def handle_warn(dtu: SimulatedDtu, request: warn_pb2.WarnToDtu) -> warn_pb2.WarnFromDtu:
    warns = [
        warn_pb2.WarnInfo(
            pv_sn=inv.serial,
            code=w.code,
            num=w.num,
            s_time=w.start,
            e_time=w.end,
            w_data1=w.data1,
            w_data2=w.data2,
        )
        for inv in dtu.inverters
        for w in inv.warnings
    ]
    return warn_pb2.WarnFromDtu(
        dtu_sn=dtu.serial,
        time=int(dtu.now()),
        package_nub=1 if warns else 0,
        package_now=0,
        warn_device=len({w.pv_sn for w in warns}),
        warns=warns,
    )


# --- history -------------------------------------------------------------------


def handle_hist_power(
    dtu: SimulatedDtu, request: history_pb2.HistPowerToDtu
) -> history_pb2.HistPowerFromDtu:
    """Today's AC power every 300 s since local midnight, 40 samples per page."""
    readings = dtu.live_readings()
    now = dtu.now()
    midnight = local_midnight(now)
    count = int((now - midnight) // HIST_STEP) + 1
    pages = _pages(count, HIST_SAMPLES_PER_PAGE)
    page = min(max(request.cp, 0), pages - 1)
    first = page * HIST_SAMPLES_PER_PAGE
    last = min(count, first + HIST_SAMPLES_PER_PAGE)
    samples = []
    for index in range(first, last):
        t = midnight + index * HIST_STEP
        watts = 0.0
        for inverter in dtu.inverters:
            _, ac = inverter.model.limited(
                inverter.model.available_dc(t), inverter.effective_permille, inverter.on
            )
            watts += ac
        samples.append(round(watts * 10))
    start = int(midnight + first * HIST_STEP)
    return history_pb2.HistPowerFromDtu(
        sn=dtu.spec.serial_int,
        ap=pages,
        cp=page,
        oft=utc_offset(now),
        time=int(now),
        time_st=int(first * HIST_STEP),
        l_time_start=int(first * HIST_STEP),
        abs_time_start=start,
        step_time=HIST_STEP,
        r_p=0,
        et=sum(p.energy_total for r in readings for p in r.ports),
        ed=sum(p.energy_daily for r in readings for p in r.ports),
        p=samples,
        warn_num=sum(inv.wnum for inv in dtu.inverters),
    )


def handle_hist_energy(
    dtu: SimulatedDtu, request: history_pb2.HistEnergyToDtu
) -> history_pb2.HistEnergyFromDtu:
    """Daily energies of the last week (today's from the counters, earlier days estimated)."""
    readings = dtu.live_readings()
    now = dtu.now()
    today = sum(p.energy_daily for r in readings for p in r.ports)
    rng = random.Random(dtu.spec.serial_int)
    rated = sum(inv.spec.rated_power for inv in dtu.inverters)
    midnight = local_midnight(now)
    entries = []
    for days_back in range(6, 0, -1):
        day_start = local_midnight(midnight - days_back * 86400 + 43200)
        entries.append(
            history_pb2.EnergyInfo(ed=round(rated * rng.uniform(2.0, 7.0)), r_time=int(day_start))
        )
    entries.append(history_pb2.EnergyInfo(ed=today, r_time=int(midnight)))
    return history_pb2.HistEnergyFromDtu(
        sn=dtu.spec.serial_int, oft=utc_offset(now), time=int(now), energ=entries
    )


# --- misc ------------------------------------------------------------------------


def handle_auto_search(
    dtu: SimulatedDtu, request: autosearch_pb2.AutoSearchToDtu
) -> autosearch_pb2.AutoSearchFromDtu:
    return autosearch_pb2.AutoSearchFromDtu(
        dtu_sn=dtu.serial,
        time=int(dtu.now()),
        package_nub=1,
        package_now=0,
        mi_sn=[inv.serial for inv in dtu.inverters],
    )


def _self_test_item(code: int, default: int, rng: random.Random) -> gridselftest_pb2.SelfTestItem:
    return gridselftest_pb2.SelfTestItem(
        code=code,
        dflt_val=default,
        dflt_tim=100,
        rslt_val=default + rng.randint(-3, 3),
        rslt_tim=100 + rng.randint(0, 8),
    )


def handle_grid_self_test(
    dtu: SimulatedDtu, request: gridselftest_pb2.GridSelfTestToDtu
) -> gridselftest_pb2.GridSelfTestFromDtu:
    values = []
    for inverter in dtu.inverters:
        rng = random.Random(inverter.serial)
        values.append(
            gridselftest_pb2.GridSelfTestValue(
                pv_sn=inverter.serial,
                ver=1,
                st=1,
                gpf=2560,
                gpf_ver=8193,
                hv1=_self_test_item(1, 2530, rng),
                lv1=_self_test_item(2, 1955, rng),
                hv2=_self_test_item(3, 2645, rng),
                lv2=_self_test_item(4, 1840, rng),
                hf1=_self_test_item(5, 5150, rng),
                lf1=_self_test_item(6, 4750, rng),
                hf2=_self_test_item(7, 5200, rng),
                lf2=_self_test_item(8, 4700, rng),
            )
        )
    return gridselftest_pb2.GridSelfTestFromDtu(
        dtu_sn=dtu.serial, time=int(dtu.now()), package_nub=1, package_now=0, gpst_info=values
    )


def handle_dev_config_fetch(
    dtu: SimulatedDtu, request: devconfig_pb2.DevConfigFetchToDtu
) -> devconfig_pb2.DevConfigFetchFromDtu:
    seed = request.dev_sn or dtu.serial
    data = random.Random(f"{seed}:{request.rule_type}").randbytes(64)
    return devconfig_pb2.DevConfigFetchFromDtu(
        time=int(dtu.now()),
        tid=request.tid,
        rule_id=request.rule_type or 1,
        data=data,
        crc=crc16_modbus(data),
        dtu_sn=dtu.serial,
        dev_sn=request.dev_sn,
        package_nub=1,
        package_now=0,
        rule_type=request.rule_type,
    )


def handle_dev_config_put(
    dtu: SimulatedDtu, request: devconfig_pb2.DevConfigPutToDtu
) -> devconfig_pb2.DevConfigPutFromDtu:
    return devconfig_pb2.DevConfigPutFromDtu(
        time=int(dtu.now()),
        tid=request.tid,
        dtu_sn=dtu.serial,
        dev_sn=request.dev_sn,
        status=0,
        mi_to_sn=list(request.mi_to_sn),
        rule_type=request.rule_type,
    )


# --- gateway and energy storage (extended header) -------------------------------


def handle_gateway_info(
    dtu: SimulatedDtu, request: gateway_pb2.GatewayInfoToDtu
) -> gateway_pb2.GatewayInfoFromDtu:
    dfs = _dfs(dtu)
    return gateway_pb2.GatewayInfoFromDtu(
        serial_number=dtu.spec.serial_int,
        time=int(dtu.now()),
        ap=1,
        cp=0,
        gw_info=[
            gateway_pb2.GatewayInfo(
                mod=1,
                sw=dtu.spec.firmware,
                hw=dtu.spec.hardware,
                wifi_v="2.3.0.0-sim",
                dfs=dfs,
            )
        ],
        dev_info=[
            gateway_pb2.DeviceInfo(serial_number=inv.serial, type=_DEVICE_KIND_MICRO, addr=i + 1)
            for i, inv in enumerate(dtu.inverters)
        ],
    )


def handle_gateway_net_info(
    dtu: SimulatedDtu, request: gateway_pb2.GatewayNetInfoToDtu
) -> gateway_pb2.GatewayNetInfoFromDtu:
    now = dtu.now()
    return gateway_pb2.GatewayNetInfoFromDtu(
        serial_number=dtu.spec.serial_int,
        time=int(now),
        net_set_mod=1,
        net_set_state=1,
        net_work_mod=1,
        net_work_time=int(now - dtu.boot_time),
        csq=dtu.signal_strength,
        net_work_state=1,
    )


def handle_es_registry(
    dtu: SimulatedDtu, request: energy_storage_pb2.EsRegistryToDtu
) -> energy_storage_pb2.EsRegistryFromDtu:
    """A micro-inverter DTU has no storage: an empty registry."""
    now = dtu.now()
    return energy_storage_pb2.EsRegistryFromDtu(time=int(now), offset=utc_offset(now))


def handle_es_data(
    dtu: SimulatedDtu, request: energy_storage_pb2.EsDataToDtu
) -> energy_storage_pb2.EsDataFromDtu:
    now = dtu.now()
    return energy_storage_pb2.EsDataFromDtu(sn=request.sn, time=int(now), offset=utc_offset(now))


Handler = Callable[[SimulatedDtu, Any], Message]

#: Request tag -> handler.
HANDLERS: Final[dict[int, Handler]] = {
    0xA301: handle_app_info,
    0xA302: handle_heartbeat,
    0xA303: handle_real_data,
    0xA304: handle_warn,
    0xA305: handle_command,
    0xA306: handle_command_status,
    0xA307: handle_dev_config_fetch,
    0xA308: handle_dev_config_put,
    0xA309: handle_get_config,
    0xA310: handle_set_config,
    0xA311: handle_real_data_new,
    0xA312: handle_grid_self_test,
    0xA313: handle_auto_search,
    0xA314: handle_network_info,
    0xA315: handle_hist_power,
    0xA316: handle_hist_energy,
    0x2305: handle_command,
    0xDB01: handle_gateway_info,
    0xDB06: handle_gateway_net_info,
    0xC302: handle_es_registry,
    0xC303: handle_es_data,
}

__all__ = ["HANDLERS", "INVERTERS_PER_PAGE", "Handler", "heartbeat", "real_data_page"]
